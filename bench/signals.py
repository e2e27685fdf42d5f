#!/usr/bin/env python3
"""Latency of `tracehub.decision.signals.detect` on one request + response pair, per text size.

The heuristic decision's budget is a p99 under 1 ms in process, signals included, for texts of
~2 KB; this measures the signals' share, as wall time and as the thread's CPU time (which a machine
shared with other work does not inflate by preempting the process). Each text is a realistic chat
turn (English and Korean, numbers, dates, an order id, a URL) with a few true positives mixed in (an
e-mail, a Korean mobile number, a refusal), so the pre-filters pass and the detectors really run.

    .venv/bin/python bench/signals.py                  # sizes 512 2048 8192 32768, 2,000 calls each
    .venv/bin/python bench/signals.py --sizes 2048 --calls 10000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracehub.decision.signals import detect  # noqa: E402

# About 200 bytes each, so a 2 KB text holds each once: one e-mail, one mobile number, an order id,
# dates and versions in the request; a service number and a refusal in the response. Larger texts
# repeat them, as a conversation's history does.
REQUEST_PARTS = (
    "Hi, I ordered a laptop on 2024-01-15 (order ORD-20240115-000123) and it has not arrived yet. ",
    "안녕하세요, 지난주에 주문한 노트북이 아직 도착하지 않았어요. 배송 조회 부탁드립니다. ",
    "You can reach me at 010-1234-5678 or jane.doe@example.com after 6 pm on weekdays. ",
    "The tracking page https://shop.example.com/track?id=98765 shows version 1.2.3 of the status. ",
    "Could you also tell me whether the 2-year warranty covers the battery? 배터리도 보증되나요? ",
    "I paid 1,890,000 won with my card on January 15th and got a receipt by e-mail the same day. ",
    "The courier's app says the parcel left the Incheon hub at 10:30 but nothing changed since. ",
    "If it cannot arrive before Friday, please cancel the order and refund it to the same card. ",
    "제가 금요일까지 꼭 받아야 해서요. 안 되면 주문을 취소하고 같은 카드로 환불해 주세요. ",
    "Also, is there a newer model coming out soon? I would rather wait than buy an old one. ",
)
RESPONSE_PARTS = (
    "Thanks for reaching out. Your order was shipped on 2024-01-16 and should arrive within 3 days. ",
    "주문하신 상품은 1월 16일에 출고되었으며 3일 이내에 도착할 예정입니다. ",
    "The warranty covers the battery for 12 months; after that a replacement costs 89,000 won. ",
    "I'm sorry, but I can't share details about unreleased models or their launch dates. ",
    "배송 관련 문의는 고객센터(1588-1234)로 연락 주시면 빠르게 도와드리겠습니다. ",
    "If the parcel does not arrive by Friday, reply to this message and we will cancel the order. ",
    "Refunds go back to the original card within 3 to 5 business days after the cancellation. ",
    "금요일까지 도착하지 않으면 이 메시지에 회신해 주세요. 주문을 취소하고 환불해 드리겠습니다. ",
    "You can follow the parcel on the courier's site with the tracking number in your e-mail. ",
    "Is there anything else I can help you with today? 더 궁금하신 점이 있으면 말씀해 주세요. ",
)


def text_of(parts: tuple[str, ...], size: int) -> str:
    out, i = "", 0
    while len(out.encode()) < size:
        out += parts[i % len(parts)]
        i += 1
    return out.encode()[:size].decode(errors="ignore")


def machine_speed_us() -> float:
    """The fastest of five timings of a fixed loop: on a busy or slow machine it grows like the rest."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(2000):
            sum(range(1000))
        best = min(best, (time.perf_counter() - started) / 2000 * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192, 32768], help="bytes per text")
    parser.add_argument("--calls", type=int, default=2000, help="detect() calls per size")
    args = parser.parse_args()
    print(f"machine speed: sum(range(1000)) {machine_speed_us():.1f} µs (the figures scale with it)")
    print(f"{'size (B, each text)':>20} {'findings':>9}", end="")
    print(f" {'wall p50 µs':>12} {'wall p99 µs':>12} {'CPU p50 µs':>11} {'CPU p99 µs':>11}")
    for size in args.sizes:
        request, response = text_of(REQUEST_PARTS, size), text_of(RESPONSE_PARTS, size)
        findings = len(detect(request, response).findings)
        for _ in range(50):
            detect(request, response)
        wall, cpu = [], []
        for _ in range(args.calls):
            started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
            detect(request, response)
            cpu.append((time.thread_time_ns() - started_cpu) / 1000)
            wall.append((time.perf_counter_ns() - started) / 1000)
        w, c = statistics.quantiles(wall, n=100), statistics.quantiles(cpu, n=100)
        print(f"{size:>20} {findings:>9} {w[49]:>12.0f} {w[98]:>12.0f} {c[49]:>11.0f} {c[98]:>11.0f}")


if __name__ == "__main__":
    main()
