"""Pricing benchmark: what pricing costs per LLM span.

Target (issue 15, deliverable 4): <= 2 µs per span on the cached path.

Measures, on this machine, with a realistic mix of models (package-priced, overridden, unknown)
and providers over a few days:

1. ``genai_prices.calc_price`` itself, per call (why the rates are cached);
2. ``Pricer.cost`` on the cached path, per span (dict lookup + arithmetic);
3. the first look-up of a (provider, model, day): five package calculations, then cached;
4. ``Normalizer.usage_and_cost`` per LLM span (convention look-ups + reported cost + pricing),
   and a whole ``normalize_span`` of an LLM span, for scale.

    python bench/pricing.py            # 200,000 spans
    python bench/pricing.py --spans 1000000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genai_prices import Usage, calc_price  # noqa: E402

from flightrec.collector.normalize import NormalizeConfig, Normalizer, attributes_to_dict  # noqa: E402
from flightrec.collector.prices import ModelPrice, Pricer  # noqa: E402
from tests.otlp_helpers import make_span  # noqa: E402

TARGET_US = 2.0
MODELS = (
    ("openai", "gpt-4o-2024-08-06"), ("openai", "gpt-4.1-mini-2025-04-14"),
    ("anthropic", "claude-3-5-sonnet-20241022"), ("anthropic", "claude-sonnet-4-5-20250929"),
    ("gcp.gemini", "gemini-2.0-flash"), ("", "gemini-1.5-pro"), ("", "acme-internal-llm"), ("", "ours-7b"),
)
DAY_NS = 86_400 * 10**9
START_NS = 1_750_000_000 * 10**9


def per_call_us(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=200_000, help="spans priced per measurement")
    args = parser.parse_args()
    n = args.spans

    def package(count: int) -> None:
        for i in range(count):
            calc_price(Usage(input_tokens=1000 + i % 7, output_tokens=200), model_ref="claude-3-5-sonnet-20241022",
                       provider_id="anthropic")

    package_us = per_call_us(package, 2000)

    pricer = Pricer({"ours-": ModelPrice(input_per_mtok=0.1, output_per_mtok=0.2)})
    days = 3
    t0 = time.perf_counter()
    for provider, model in MODELS:
        for day in range(days):
            pricer.cost(model, 1, 1, provider=provider, start_ns=START_NS + day * DAY_NS)
    first_ms = (time.perf_counter() - t0) / (len(MODELS) * days) * 1e3

    calls = [(MODELS[i % len(MODELS)], 800 + i % 500, 50 + i % 300, (i % 4) * 100, START_NS + (i % days) * DAY_NS)
             for i in range(n)]

    def cached(count: int) -> None:
        cost = pricer.cost
        for (provider, model), t_in, t_out, cache, start in calls[:count]:
            cost(model, t_in, t_out, cache, 0, provider=provider, start_ns=start)

    cached_us = per_call_us(cached, n)

    normalizer = Normalizer(NormalizeConfig(prices={"ours-": ModelPrice(input_per_mtok=0.1, output_per_mtok=0.2)}))
    spans = []
    for i in range(len(MODELS) * days):
        provider, model = MODELS[i % len(MODELS)]
        attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, "gen_ai.response.model": model,
                 "gen_ai.usage.input_tokens": 812 + i, "gen_ai.usage.output_tokens": 95,
                 "gen_ai.usage.cache_read.input_tokens": 300, "gen_ai.request.temperature": 0.2,
                 "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'}
        if provider:
            attrs["gen_ai.provider.name"] = provider
        spans.append(make_span("chat", attrs, start_ns=START_NS + (i // len(MODELS)) * DAY_NS))
    decoded = [(attributes_to_dict(span.attributes), span.start_time_unix_nano) for span in spans]
    for attrs, start in decoded:
        normalizer.usage_and_cost(attrs, {}, attrs["gen_ai.response.model"], start)

    def usage(count: int) -> None:
        fn, k = normalizer.usage_and_cost, len(decoded)
        for i in range(count):
            attrs, start = decoded[i % k]
            fn(attrs, {}, attrs["gen_ai.response.model"], start)

    usage_us = per_call_us(usage, n)

    def whole(count: int) -> None:
        fn, k = normalizer.normalize_span, len(spans)
        for i in range(count):
            fn(spans[i % k], {"service.name": "svc"}, "scope", "1.0", {"agent": "svc"})

    whole_us = per_call_us(whole, max(1, n // 4))

    print(f"genai_prices.calc_price, per call:                 {package_us:8.1f} µs")
    print(f"first look-up of a (provider, model, day):         {first_ms:8.2f} ms (then cached)")
    print(f"Pricer.cost, cached path, per span:                {cached_us:8.3f} µs  (target <= {TARGET_US} µs: "
          f"{'met' if cached_us <= TARGET_US else 'MISSED'})")
    print(f"Normalizer.usage_and_cost, per LLM span:           {usage_us:8.3f} µs  (tokens, reported cost, price)")
    print(f"Normalizer.normalize_span, per LLM span (scale):   {whole_us:8.3f} µs")


if __name__ == "__main__":
    main()
