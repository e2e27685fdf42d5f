"""LLM Trace Hub: an OpenTelemetry-native tracing backend and decision engine for LLM apps."""
