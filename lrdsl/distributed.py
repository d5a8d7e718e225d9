"""Plateau reports under torch.distributed that cannot hang: posted, then decided in lock-step.

A report is no collective.  The reporting rank *posts* its values into the default process
group's key-value store (the c10d store torchrun set up) under the round it is in, and every
rank *decides* the round at a point all ranks pass in lock-step after it: the optimizer step
pre-hook.  Under DDP or FSDP no rank can reach its optimizer step k before every rank has
finished the backward of step k, and a rank's report comes before its backward, so by then
every post of round k is in the store (a post waits for the store's answer before it returns).

Every rank reads the same posts of round k: the first reader *seals* the round (appends ``|``
after what it saw, by compare-and-set), and every reader takes what precedes the first seal.
A post that lands after the seal (reported between a backward and its optimizer step) sees
the seal when it reads its post back and goes to the next round, which no rank can have
sealed yet.  So rank-0-only reporting, every-rank reporting and any subset agree, and nothing
waits on another rank.

The decision of a round: per process group (the posts' members, in the order of their first
post), the i-th report of each rank that posted into that group is averaged over those ranks
(the mean over the ranks that reported) and reported to the plateau, i = 0, 1…; a rank
outside the group ignores it.  Cost: one store round trip per optimizer step on each rank
(two on rank 0, which deletes the round before the last), and only for a schedule with a
plateau under a world size above 1.

``report(..., collective=True)``, where every rank reports at one point, is the one collective
here: :func:`mean_across`, an all_reduce decided at once.

The store is reached through ``torch.distributed.distributed_c10d._get_default_store``, a
private name (there is no public one): tests/test_distributed_reports.py fails loudly if it
goes away.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

import torch
import torch.distributed as dist

from lrdsl.errors import LrdslError

SEAL = b"|"


def world() -> bool:
    """Whether reports must go through the store: a process group of more than one rank is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def members(group: Any) -> list[int] | None:
    """The global ranks of ``group`` (None: the default group, every rank), checked to hold this rank."""
    if group is None or group is dist.group.WORLD:
        return None
    try:
        ranks = sorted(dist.get_process_group_ranks(group))
    except (ValueError, RuntimeError, TypeError, AttributeError) as error:
        raise LrdslError(f"process_group= must be a torch.distributed process group (dist.new_group), "
                         f"got {type(group).__name__}: {error}") from None
    if dist.get_rank() not in ranks:
        raise LrdslError(f"process_group= holds ranks {ranks}, not this rank ({dist.get_rank()}): "
                         f"report from a rank of the group, or pass this rank's group")
    return None if len(ranks) == dist.get_world_size() else ranks


def mean_across(values: list[float], group: Any = None) -> list[float]:
    """The mean over the ranks of ``group`` (a collective: every rank of it must call this)."""
    size = dist.get_world_size(group)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" \
        else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return [float(total) / size for total in tensor.tolist()]


class Rounds:
    """The reports of one scheduler on this rank: what it posted, and the rounds it decided.

    ``name`` must be the same on every rank for the same scheduler (its canonical expressions
    and how many schedulers of them this process built before it); ``decide(reports)`` gets a
    round's decision, a list of per-plateau value lists, in order.
    """

    _built: dict[str, int] = {}  # schedulers built per name in this process

    def __init__(self, name: str, decide: Callable[[list[list[float]]], None]):
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        count = Rounds._built.get(digest, 0)
        Rounds._built[digest] = count + 1
        self.prefix = f"lrdsl/plateau/{digest}/{count}/"
        self.decide = decide
        self.round = 0  # the optimizer step this rank takes next
        self.posted = 0  # posts from this rank: the order of its reports
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            # torch internals: the default group's store (the rendezvous one torchrun made)
            self._store = dist.distributed_c10d._get_default_store()
        return self._store

    def post(self, values: list[float], group: Any = None) -> None:
        """Post this rank's values (one per plateau) for the next round no rank has decided."""
        line = json.dumps([dist.get_rank(), self.posted, members(group), values]).encode() + b"\n"
        self.posted += 1
        store, at = self.store, self.round
        while True:
            key = self.prefix + str(at)
            store.append(key, line)
            if line in store.get(key).split(SEAL, 1)[0]:  # before the seal: every rank reads it
                return
            at += 1  # sealed without it: the next round, which no rank can have decided yet

    def step(self) -> None:
        """Decide this round (at an optimizer step, on every rank alike), then move to the next."""
        reports = self.sealed()
        if dist.get_rank() == 0 and self.round >= 2:  # every rank has decided round - 2
            self.store.delete_key(self.prefix + str(self.round - 2))
        self.round += 1
        if reports:
            self.decide(reports)

    def sealed(self, posted_only: bool = False) -> list[list[float]]:
        """This round's decision for this rank, the round sealed (no later post joins it);
        ``posted_only``: a round with no post yet is left open (a save, not a step)."""
        store, key = self.store, self.prefix + str(self.round)
        if posted_only and not store.check([key]):
            return []
        seen = store.compare_set(key, "", SEAL.decode())  # nothing posted: sealed empty at once
        while SEAL not in seen:  # posts, not yet sealed: seal right after what was seen
            seen = store.compare_set(key, seen, seen + SEAL)
        posts = seen.split(SEAL, 1)[0]
        return decision(posts.decode().splitlines(), dist.get_rank()) if posts else []


def decision(lines: list[str], rank: int) -> list[list[float]]:
    """The reports a round's posts make for ``rank``: per group holding it (in the order of its
    first post), the i-th post of each rank in it averaged over the ranks that have one."""
    groups: dict[Any, dict[int, list[tuple[int, list[float]]]]] = {}
    for line in lines:
        sender, order, ranks, values = json.loads(line)
        if ranks is not None and rank not in ranks:
            continue
        by_rank = groups.setdefault(None if ranks is None else tuple(ranks), {})
        by_rank.setdefault(sender, []).append((order, values))
    reports = []
    for by_rank in groups.values():
        ordered = [[values for _, values in sorted(posts)] for posts in by_rank.values()]
        for i in range(max(map(len, ordered))):
            column = [posts[i] for posts in ordered if len(posts) > i]
            reports.append([sum(v[j] for v in column) / len(column) for j in range(len(column[0]))])
    return reports
