"""Core speed: parse (uncached, cached) vs a bare Lark parse; curve vs numpy by hand.

    .venv/bin/python bench/core.py

Prints figures and ratios from one run.  Targets (issues #2, #10): uncached parse+AST ≤ 2× the
bare Lark LALR parse of the same text, cached parse ≤ 2 µs, curve over 10⁶ ticks ≤ 3× numpy —
for a v1 expression, a v2 one (WSD with a 1−√x cool-down and a stretched middle) and four v3
ones (a cosine quantized per epoch; a repeat whose periods grow ×1.5; REX, a quotient
lr·(1 − x)/(1 − x/2); a five-channel program) — and the cost of planning (units, anchors,
stretching and the range proof) in µs per plan.
"""

import timeit

import numpy as np
from lark import Lark

import lrdsl
from lrdsl.language.parser import _parse_text, grammar_path
from lrdsl.language.plan import _plan

EXAMPLE = "warmup(5) >> cosine(0.1, 100) | plateau(val_loss, 0.5)"
V2 = "warmup(1%) >> 3e-4 >> cooldown(20%, power=0.5)"
V3 = "quantize(cosine(0.1, 10000ep), 1ep)"  # a per-epoch cosine, 100 steps per epoch
V3_REPEAT = "repeat(cosine(0.1, 1000), mult=1.5)"
REX = "0.1 * anneal(1, 0, 100%, shape=linear) / anneal(1, 0.5, 100%, shape=linear)"
PROGRAM = """lr = warmup(1%) >> cosine(3e-4, 99%)
momentum = anneal(0.95, 0.85, 100%)
weight_decay = anneal(0.04, 0.4, 100%)
ema = anneal(0.996, 1, 100%)
kl = min(linear(0, 1, 10%), 1)"""


def best_us(fn, number):
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main():
    bare = Lark(grammar_path().read_text(), parser="lalr")
    bare_us = best_us(lambda: bare.parse(EXAMPLE), 2000)

    def uncached():
        _parse_text.cache_clear()
        return lrdsl.parse(EXAMPLE)

    uncached_us = best_us(uncached, 2000)
    lrdsl.parse(EXAMPLE)
    cached_us = best_us(lambda: lrdsl.parse(EXAMPLE), 200_000)

    n = 10**6
    losses = list(np.linspace(1.0, 0.5, 50)) + [0.5] * 50
    t = np.arange(n, dtype=np.float64)
    report_every = n // 100

    def by_hand():
        f = np.where(t < 5, 0.1 * t / 5,
                     0.1 * (1 + np.cos(np.pi * np.minimum(t - 5, 100) / 100)) / 2)
        scales = np.asarray(lrdsl.plan(EXAMPLE).plateau.scales(losses))
        s = scales[np.minimum(t // report_every, len(losses)).astype(np.int64)]
        return np.minimum(f, np.maximum(f * s, 0.0))

    def ours():
        return lrdsl.curve(EXAMPLE, n, metrics={"val_loss": losses}, report_every=report_every)

    np.testing.assert_allclose(ours(), by_hand(), rtol=1e-12, atol=1e-15)
    numpy_ms = best_us(by_hand, 3) / 1e3
    curve_ms = best_us(ours, 3) / 1e3

    # --- v2: WSD over a run of n ticks ---------------------------------------------------------
    bare_v2_us = best_us(lambda: bare.parse(V2), 2000)

    def uncached_v2():
        _parse_text.cache_clear()
        return lrdsl.parse(V2)

    uncached_v2_us = best_us(uncached_v2, 2000)
    warm, cool = n // 100, n // 5

    def wsd_by_hand():
        x = np.minimum(t - (n - cool), cool) / cool
        return np.where(t < warm, 3e-4 * t / warm,
                        np.where(t < n - cool, 3e-4, 3e-4 * (1 - np.sqrt(np.maximum(x, 0)))))

    def wsd_ours():
        return lrdsl.curve(V2, n, total=n)

    np.testing.assert_allclose(wsd_ours(), wsd_by_hand(), rtol=1e-9, atol=1e-15)
    wsd_numpy_ms = best_us(wsd_by_hand, 3) / 1e3
    wsd_curve_ms = best_us(wsd_ours, 3) / 1e3

    # --- v3: a cosine held per epoch over 10⁶ ticks --------------------------------------------
    def quantized_by_hand():
        epoch = np.minimum(t // 100, 10000)  # the epoch index, then the cosine at its start
        return 0.1 * (1 + np.cos(np.pi * epoch / 10000)) / 2

    def quantized_ours():
        return lrdsl.curve(V3, n, steps_per_epoch=100)

    np.testing.assert_allclose(quantized_ours(), quantized_by_hand(), rtol=1e-9, atol=1e-15)
    quantized_numpy_ms = best_us(quantized_by_hand, 3) / 1e3
    quantized_curve_ms = best_us(quantized_ours, 3) / 1e3

    # --- v3: a growing repeat over n ticks --------------------------------------------------------
    def growing_by_hand():
        begins = 1000 * (1.5 ** np.arange(40) - 1) / 0.5  # repetition k from ⌈Bₖ⌉
        k = np.searchsorted(np.ceil(begins), t, side="right") - 1
        into = t - begins[k]
        return 0.1 * (1 + np.cos(np.pi * into / (1000 * 1.5 ** k))) / 2

    def growing_ours():
        return lrdsl.curve(V3_REPEAT, n)

    np.testing.assert_allclose(growing_ours(), growing_by_hand(), rtol=1e-9, atol=1e-15)
    growing_numpy_ms = best_us(growing_by_hand, 3) / 1e3
    growing_curve_ms = best_us(growing_ours, 3) / 1e3

    # --- v3: REX, a quotient, over a run of n ticks ----------------------------------------------
    def rex_by_hand():
        x = np.minimum(t, n) / n
        return 0.1 * (1 - x) / (1 - x / 2)

    def rex_ours():
        return lrdsl.curve(REX, n, total=n)

    np.testing.assert_allclose(rex_ours(), rex_by_hand(), rtol=1e-12, atol=1e-15)
    rex_numpy_ms = best_us(rex_by_hand, 3) / 1e3
    rex_curve_ms = best_us(rex_ours, 3) / 1e3

    # --- v3: a program of five channels over n ticks ---------------------------------------------
    def program_by_hand():
        # each channel's formula written out on its own, as the program writes them (sharing the
        # one cosine share of the three annealed channels makes it ~1.7× faster: ratio ~3.5)
        warm = n // 100
        lr = np.where(t < warm, 3e-4 * t / warm,
                      3e-4 * (1 + np.cos(np.pi * np.minimum(t - warm, n - warm) / (n - warm))) / 2)

        def anneal(start, end):
            return start + (end - start) * (1 - np.cos(np.pi * np.minimum(t / n, 1))) / 2
        return {"lr": lr, "momentum": anneal(0.95, 0.85), "weight_decay": anneal(0.04, 0.4),
                "ema": anneal(0.996, 1), "kl": np.minimum(np.minimum(t, n // 10) / (n // 10), 1)}

    def program_ours():
        return lrdsl.curve(PROGRAM, n, total=n)

    want, got = program_by_hand(), program_ours()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-15, err_msg=name)
    program_numpy_ms = best_us(program_by_hand, 3) / 1e3
    program_curve_ms = best_us(program_ours, 3) / 1e3

    def planned(expr, **units):
        def once():
            _plan.cache_clear()
            return lrdsl.plan(expr, **units)
        return best_us(once, 2000)

    plan_v1_us = planned(EXAMPLE)
    plan_v2_us = planned(V2, total=n)

    rows = [
        ("parse, uncached (µs)", uncached_us, "bare Lark LALR parse", bare_us, 2.0),
        ("parse, cached (µs)", cached_us, "target", 2.0, 1.0),
        ("curve, 10⁶ ticks, warmup+cosine+plateau (ms)", curve_ms, "numpy by hand", numpy_ms, 3.0),
        ("v2 parse, uncached (µs)", uncached_v2_us, "bare Lark LALR parse", bare_v2_us, 2.0),
        ("v2 curve, 10⁶ ticks, WSD 1−√x (ms)", wsd_curve_ms, "numpy by hand", wsd_numpy_ms, 3.0),
        ("v3 curve, 10⁶ ticks, quantized cosine (ms)", quantized_curve_ms, "numpy by hand",
         quantized_numpy_ms, 3.0),
        ("v3 curve, 10⁶ ticks, repeat ×1.5 (ms)", growing_curve_ms, "numpy by hand",
         growing_numpy_ms, 3.0),
        ("v3 curve, 10⁶ ticks, REX quotient (ms)", rex_curve_ms, "numpy by hand", rex_numpy_ms, 3.0),
        ("v3 curve, 10⁶ ticks, five-channel program (ms)", program_curve_ms, "numpy by hand",
         program_numpy_ms, 3.0),
    ]
    print(f"expression: {EXAMPLE}")
    print(f"v2 expression: {V2} (total=10⁶)")
    print(f"v3 expression: {V3} (steps_per_epoch=100)")
    print(f"v3 expression: {V3_REPEAT}")
    print(f"v3 expression: {REX} (total=10⁶)")
    print(f"{'measure':<48} {'lrdsl':>10} {'against':>24} {'value':>10} {'ratio':>7} {'target':>7}")
    for name, ours_value, against, theirs, target in rows:
        ratio = ours_value / theirs
        flag = "ok" if ratio <= target else "MISS"
        print(f"{name:<48} {ours_value:>10.2f} {against:>24} {theirs:>10.2f} {ratio:>7.2f} "
              f"{'≤' + format(target, 'g'):>7} {flag}")
    print(f"plan with range proof, uncached (µs): {plan_v1_us:.1f} ({EXAMPLE}), "
          f"{plan_v2_us:.1f} ({V2})")


if __name__ == "__main__":
    main()
