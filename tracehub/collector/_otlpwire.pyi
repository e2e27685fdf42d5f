from tracehub.collector.otlp import TraceParts

PARTS_VERSION: int

def trace_parts(body: bytes | memoryview, /) -> TraceParts | None: ...
