"""``make run`` until the training app lands: parse the example, show its canonical form and LRs."""

import lrdsl

EXAMPLE = "warmup(5) >> cosine(0.1, 100) | plateau(val_loss, 0.5)"


def main() -> None:
    expr = lrdsl.parse(EXAMPLE)
    print(f"expression: {EXAMPLE}\ncanonical:  {expr}")
    ticks = [0, 1, 5, 50, 104, 105, 200]
    for tick, lr in zip(ticks, lrdsl.curve(expr, ticks)):
        print(f"  tick {tick:>4}: lr = {lr:.6g}")


if __name__ == "__main__":
    main()
