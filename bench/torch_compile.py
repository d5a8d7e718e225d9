"""A torch.compile'd optimizer step running across LR changes: zero recompiles with lrdsl.

    .venv/bin/python bench/torch_compile.py

With a tensor ``lr`` in the param group, lrdsl writes each new LR in place (``fill_``), so
the compiled step's guards keep holding.  For contrast, the same loop with a float ``lr``
recompiles when the float first changes (torch 2.13 then treats the float as dynamic).
"""

import torch
import torch._dynamo

import lrdsl.torch

EXPR = "warmup(5) >> cosine(0.01, 45)"


def compiles_over(steps: int, tensor_lr: bool) -> tuple[int, list[float]]:
    torch._dynamo.reset()
    count = 0

    def counting_backend(graph_module, example_inputs):
        nonlocal count
        count += 1
        return graph_module.forward

    torch.manual_seed(0)
    model = torch.nn.Linear(16, 16)
    lr = torch.tensor(0.01) if tensor_lr else 0.01
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = lrdsl.torch.scheduler(opt, EXPR)

    @torch.compile(backend=counting_backend)
    def optimizer_step():
        opt.step()

    seen = []
    for _ in range(steps):
        model(torch.randn(8, 16)).pow(2).mean().backward()
        optimizer_step()
        opt.zero_grad()
        sched.step()
        seen.append(float(opt.param_groups[0]["lr"]))
    return count, seen


def main():
    steps = 30
    tensor_count, lrs = compiles_over(steps, tensor_lr=True)
    float_count, _ = compiles_over(steps, tensor_lr=False)
    distinct = len(set(round(v, 12) for v in lrs))
    print(f"{EXPR}: {steps} compiled optimizer steps over {distinct} distinct LRs")
    print(f"  tensor lr (lrdsl fills in place): {tensor_count} compilation(s), "
          f"{tensor_count - 1} recompiles")
    print(f"  float lr, for contrast:           {float_count} compilation(s)")


if __name__ == "__main__":
    main()
