"""DistributedDataParallel plumbing of the training loop: launchers, the process group, the epoch's shards.

How the processes come to be (:func:`launch`, called by :func:`affectfuse.training.train` when
``world = devices * nodes`` is above 1 or a launcher started several processes):

* the caller already initialised ``torch.distributed`` (a notebook, a script of its own): that group is used
  (:func:`current`); its world size must equal ``devices * nodes``;
* a launcher started them — ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT``) or an ``srun`` step (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` / ``SLURM_NTASKS``,
  ``SLURM_LOCALID``, the first host of the step's node list): :func:`launch_env` reads it, :func:`join` joins
  the group. Its world size must equal ``devices * nodes`` (a clear error otherwise). A SLURM *batch script*
  (no ``srun``: no step id, or the ``batch`` step) is no launcher;
* a plain command with ``devices > 1`` (one node): :func:`spawn` starts the local processes itself
  (``torch.multiprocessing``, ``spawn`` start method, rendezvous on a ``TCPStore`` the parent serves on a free
  port); on CPU each gets ``cores // devices`` threads. Rank 0's log lines, its result and the first error of
  a failed rank come back to the caller.

The backend is NCCL when the run trains on CUDA (each rank on ``cuda:LOCAL_RANK``, or on the one GPU a task
sees), gloo on CPU.

Who does what: every rank builds the model and the datasets (same seed, same weights; DDP also broadcasts
rank 0's weights), trains on its shard of every global batch and takes the same optimiser steps (DDP averages
the gradients). Rank 0 alone writes the run folder, evaluates (the dev split each epoch and every split at the
end, over the whole split: the metrics are the one-process metrics, with no padding duplicates) and reads the
checkpoint to resume; :func:`on_main` sends its result — or its exception — to every rank, so that all ranks
take the same decisions (best epoch, early stop) and fail together.

The data: :class:`EpochShards` is a :class:`~torch.utils.data.DistributedSampler` (``set_epoch`` before every
epoch) whose epoch order is the *one-process* order of the same epoch (:func:`epoch_order`, a function of
``(seed, epoch)`` only), cut so that global batch ``k`` — ``batch_size`` samples — is exactly the one-process
batch ``k``, each rank taking ``batch_size // world`` of them. The last, short global batch is split as evenly
as possible without duplicates; a rank left without a sample gets a duplicate whose loss is weighted 0, and
every rank's loss is weighted by its share, so DDP's gradient average is the mean over the real samples of the
global batch. That is exact for per-sample mean losses without dropout (tested against one process within
float tolerance); losses over batch statistics (CCC), masked frame-level means and BatchNorm see per-rank
sub-batches, and each rank draws its own dropout noise, so those runs agree with one process statistically,
not to the last digit.
"""

from __future__ import annotations

import atexit
import gc
import os
import pickle
import queue as queue_mod
import re
import threading
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, DistributedSampler

__all__ = ["LaunchEnv", "launch_env", "first_host", "Group", "join", "current", "spawn", "launch", "wanted",
           "on_main", "wrap", "backend_for", "EpochShards", "epoch_order", "local_cores", "RANK_SEED"]

T = TypeVar("T")

#: how long a rank waits at a collective (rank 0 evaluates every split while the others wait at one).
TIMEOUT = timedelta(hours=2)
#: how long a rank leaving the group waits for the others at the last barrier (gloo)
LEAVE_TIMEOUT = timedelta(seconds=120)
#: rank ``r`` seeds its dropout noise of epoch ``e`` with the one-process seed + ``r * RANK_SEED``
RANK_SEED = 1_000_003
#: the group joined from a launcher's environment (kept for the process's later runs)
_JOINED: dict[str, "Group"] = {}
#: SLURM's step ids of the batch script and of the extern / interactive steps: no ``srun`` task
_NOT_A_STEP = {"batch", "extern", "interactive", "4294967294", "4294967295", "4294967293"}


# -- launcher environments (pure functions) ----------------------------------------------------------
@dataclass(frozen=True)
class LaunchEnv:
    """What a launcher told this process.

    Attributes:
        rank: global rank.
        world_size: processes in all.
        local_rank: rank on this node (the GPU index).
        master_addr: host of rank 0 (the rendezvous).
        master_port: its port.
        launcher: ``"torchrun"`` or ``"slurm"``.
    """

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={env[name]!r} is not an integer") from None


def _split_top(text: str) -> list[str]:
    """Split at the commas outside brackets (``"a[1,3],b"`` → ``["a[1,3]", "b"]``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ']'")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError("unbalanced '['")
    return [*parts, text[start:]]


def first_host(nodelist: str) -> str:
    """The first host of a SLURM host list, as ``scontrol show hostnames`` would list it first.

    ``"gpu[07-09,12],cpu3"`` → ``"gpu07"``; ``"rack[2-3]-n[01-04]"`` → ``"rack2-n01"``; ``"node1,node2"`` →
    ``"node1"`` (zero padding kept).

    Raises:
        ValueError: an empty or unparsable list (the message quotes it).
    """
    try:
        first = _split_top(nodelist.strip())[0].strip()
        host = re.sub(r"\[([^\[\]]*)\]", lambda m: m.group(1).split(",")[0].split("-")[0].strip(), first)
    except ValueError as e:
        raise ValueError(f"SLURM node list {nodelist!r}: {e}") from None
    if not host or "[" in host or "]" in host:
        raise ValueError(f"SLURM node list {nodelist!r}: no host name in it")
    return host


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The launcher's description of this process, or None when no launcher started it.

    ``torchrun`` (``WORLD_SIZE`` and ``RANK`` set) wins over SLURM. SLURM counts only inside an ``srun`` step
    (``SLURM_STEP_ID`` set and not the batch script); its world size is the step's ``SLURM_STEP_NUM_TASKS``
    (else ``SLURM_NTASKS``), the address ``MASTER_ADDR`` when set, else the first host of
    ``SLURM_STEP_NODELIST`` / ``SLURM_JOB_NODELIST``, the port ``MASTER_PORT`` when set, else one derived from
    the job id (15000-24999, the same on every task of the job).

    Args:
        environ: the environment (default ``os.environ``).

    Raises:
        ValueError: a variable that must be an integer is not, or the node list cannot be read.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return LaunchEnv(rank=_int(env, "RANK"), world_size=_int(env, "WORLD_SIZE"),
                         local_rank=_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                         master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
                         master_port=_int(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500, launcher="torchrun")
    step = env.get("SLURM_STEP_ID", env.get("SLURM_STEPID"))
    if "SLURM_PROCID" not in env or step is None or step in _NOT_A_STEP:
        return None
    world = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
    if world not in env:
        return None
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    addr = env.get("MASTER_ADDR") or (first_host(nodes) if nodes else "127.0.0.1")
    if "MASTER_PORT" in env:
        port = _int(env, "MASTER_PORT")
    else:
        job = re.sub(r"\D", "", env.get("SLURM_JOB_ID", env.get("SLURM_JOBID", "0"))) or "0"
        port = 15000 + int(job[-4:]) % 10000
    return LaunchEnv(rank=_int(env, "SLURM_PROCID"), world_size=_int(env, world),
                     local_rank=_int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
                     master_addr=addr, master_port=port, launcher="slurm")


def local_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def backend_for(device: str) -> str:
    """``"nccl"`` when the config's device resolves to CUDA, else ``"gloo"``."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


def _rank_device(backend: str, local_rank: int) -> torch.device:
    """The device of a rank: ``cuda:LOCAL_RANK``, or ``cuda:0`` when the task sees one GPU (``srun
    --gpus-per-task=1`` gives each task its own ``CUDA_VISIBLE_DEVICES``); CPU for gloo."""
    if backend != "nccl":
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count == 0:
        raise RuntimeError("the run trains on CUDA (NCCL) but this process sees no GPU")
    if local_rank >= count and count != 1:
        raise ValueError(f"local rank {local_rank} needs GPU {local_rank}, but this process sees {count} GPUs; start "
                         f"at most {count} processes per node (--devices / --nproc-per-node)")
    index = local_rank if local_rank < count else 0
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


# -- the process group --------------------------------------------------------------------------------
@dataclass
class Group:
    """This process's place in the training group and the few collectives the loop uses.

    Attributes:
        rank: global rank (0 writes the run folder and evaluates).
        world_size: processes in all.
        local_rank: rank on this node.
        backend: ``"gloo"`` or ``"nccl"``.
        launcher: ``"torchrun"``, ``"slurm"``, ``"spawn"`` or ``"caller"`` (an initialised group).
        device: this rank's device (``cuda:i`` for NCCL, CPU for gloo).
        owned: whether this module initialised the group (and destroys it in :meth:`close`).
        failed: a run on it raised on this rank (it then leaves without the last barrier).
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    launcher: str
    device: torch.device
    owned: bool = False
    failed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, value: torch.Tensor) -> float:
        """The mean over ranks of a scalar tensor (one all-reduce; NaN anywhere gives NaN everywhere)."""
        t = value.detach().float().reshape(1).to(self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t) / self.world_size

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects; also a barrier)."""
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def close(self, *, sync: bool = True) -> None:
        """Leave the group (only one this module initialised), every rank at the same point.

        With ``sync`` the ranks first meet at a barrier, so that none closes its connections while another still
        has a collective in flight (gloo's transport threads abort the process — "terminate called without an
        active exception" — when a peer vanishes under them or when the group outlives the interpreter); the
        barrier is bounded by :data:`LEAVE_TIMEOUT` on gloo, so a rank that died does not hold the others. Unused
        objects that still hold the group's work (a DDP reducer) are collected before it is destroyed.
        """
        if not (self.owned and dist.is_initialized()):
            return
        if sync and self.world_size > 1:
            try:
                if self.backend == "gloo":
                    dist.monitored_barrier(timeout=LEAVE_TIMEOUT)
                else:
                    dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)
            except RuntimeError:  # a rank is gone: leave anyway, the launcher reports the failure
                pass
        gc.collect()
        dist.destroy_process_group()

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "backend": self.backend, "launcher": self.launcher}


def join(env: LaunchEnv, backend: str) -> Group:
    """Join the group a launcher set up.

    ``torchrun``: the ``env://`` rendezvous (its agent may serve the store); SLURM: rank 0 serves a store at
    ``master_addr:master_port`` (``tcp://``) and the other tasks connect to it.
    """
    device = _rank_device(backend, env.local_rank)
    init = "env://" if env.launcher == "torchrun" else f"tcp://{env.master_addr}:{env.master_port}"
    dist.init_process_group(backend, init_method=init, rank=env.rank, world_size=env.world_size, timeout=TIMEOUT)
    return Group(env.rank, env.world_size, env.local_rank, backend, env.launcher, device, owned=True)


def current(backend: str) -> Group:
    """The group the caller initialised (``LOCAL_RANK`` from the environment, else the rank)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", rank))
    backend = str(dist.get_backend() or backend)
    return Group(rank, world, local, backend, "caller", _rank_device(backend, local), owned=False)


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` when it survives pickling, else a RuntimeError with its traceback text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return RuntimeError(f"rank failed with {type(exc).__name__}: {exc}\n{text}")


def on_main(group: Group | None, fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only; its result — or its exception, raised on every rank — sent to all ranks.

    Without a group (one process) it is ``fn()``.
    """
    if group is None:
        return fn()
    box: tuple[str, Any] | None = None
    failure: Exception | None = None
    if group.is_main:
        try:
            box = ("ok", fn())
        except Exception as e:  # noqa: BLE001 - every rank raises it
            failure, box = e, ("error", _picklable(e))
    box = group.broadcast(box)
    if box[0] == "error":
        raise failure if failure is not None else box[1]
    return box[1]


def _child(local_rank: int, fn: Callable[..., Any], args: Sequence[Any], port: int, world: int, backend: str,
           threads: int | None, out: Any) -> None:
    """One spawned rank: join the parent's rendezvous, run ``fn(group, log, *args)``, report to the parent."""
    if threads:
        torch.set_num_threads(threads)
    os.environ["LOCAL_RANK"] = str(local_rank)
    group = None
    try:
        device = _rank_device(backend, local_rank)
        store = dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=TIMEOUT)
        dist.init_process_group(backend, store=store, rank=local_rank, world_size=world, timeout=TIMEOUT)
        group = Group(local_rank, world, local_rank, backend, "spawn", device, owned=True)

        def log(msg: Any = "", *_: Any) -> None:
            out.put(("log", str(msg)))

        result = fn(group, log if local_rank == 0 else _silent, *args)
        if local_rank == 0:
            out.put(("result", result))
        group.close()  # every rank at the same barrier, then gone
    except BaseException as e:  # reported with its type, then the process fails (the others are stopped)
        out.put(("error", local_rank, _picklable(e)))
        if group is not None:
            group.close(sync=False)  # the others may be stuck in a collective: no barrier
        raise


def _silent(*_: Any, **__: Any) -> None:
    """The log of ranks other than 0."""


def spawn(fn: Callable[..., Any], world: int, args: Sequence[Any], *, backend: str, log: Callable[..., Any],
          threads: int | None = None) -> Any:
    """Run ``fn(group, log, *args)`` in ``world`` new local processes; returns rank 0's result.

    The ``spawn`` start method imports the caller's ``__main__`` module in every process: a script that calls
    this needs an ``if __name__ == "__main__":`` guard.

    Args:
        fn: an importable module-level function (it is pickled by name).
        world: processes to start (ranks 0..world-1 on this host).
        args: picklable arguments.
        backend: ``"gloo"`` or ``"nccl"``.
        log: called here with every line rank 0 logs.
        threads: ``torch.set_num_threads`` of each process (CPU runs).

    Raises:
        the exception of the rank that failed first (its own type when it pickles, e.g. ``TrainingError``), or
        ``torch.multiprocessing.ProcessExitedException`` when a rank died without one (killed).
    """
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    store = dist.TCPStore("127.0.0.1", 0, world, is_master=True, wait_for_workers=False, timeout=TIMEOUT)
    found: dict[str, Any] = {"errors": {}}

    def relay() -> None:  # log lines as they come; the result and the errors are kept
        while True:
            try:
                item = out.get(timeout=0.2)
            except queue_mod.Empty:
                if found.get("done"):
                    return
                continue
            if item[0] == "log":
                log(item[1])
            elif item[0] == "result":
                found["result"] = item[1]
            elif item[0] == "error":
                found["errors"].setdefault(item[1], item[2])

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    failure: BaseException | None = None
    try:
        mp.start_processes(_child, args=(fn, tuple(args), store.port, world, backend, threads, out), nprocs=world,
                           join=True, start_method="spawn")
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
        failure = e
    finally:
        found["done"] = True
        reader.join()
        del store
    errors = found["errors"]
    if errors:
        first = getattr(failure, "error_index", None)
        raise errors.get(first, errors.get(0, next(iter(errors.values())))) from failure
    if failure is not None:
        raise failure
    return found.get("result")


def wanted(world: int, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a run of ``world = devices * nodes`` processes goes through :func:`launch`: the world is above 1,
    or a launcher or the caller started a group of several processes (then :func:`launch` checks the sizes)."""
    if world > 1:
        return True
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    env = launch_env(environ)
    return env is not None and env.world_size > 1


def _run_joined(fn: Callable[..., T], group: Group, args: Sequence[Any], log: Callable[..., Any]) -> T:
    """``fn`` on an initialised group; a failure marks it, so that leaving it at exit skips the last barrier (a
    caller's group is never left here: :meth:`Group.close` leaves only a group this module joined)."""
    try:
        return fn(group, log if group.is_main else _silent, *args)
    except BaseException:
        group.failed = True
        raise


def _leave() -> None:
    """At exit: leave the launcher's group — at a barrier after runs that ended well, at once after a failure."""
    group = _JOINED.pop("group", None)
    if group is not None:
        group.close(sync=not group.failed)


def launch(fn: Callable[..., T], args: Sequence[Any], *, devices: int, nodes: int, device: str,
           log: Callable[..., Any]) -> T:
    """Run ``fn(group, log, *args)`` on every rank of a ``devices * nodes`` world (module docstring: who starts
    the processes); returns this rank's result (rank 0's for spawned processes). Other ranks log nothing.

    Raises:
        ValueError: the launcher's (or the caller's group's) world size is not ``devices * nodes``; several
            nodes without a launcher; more devices than visible GPUs.
    """
    world, backend = devices * nodes, backend_for(device)
    asked = f"--devices {devices} x --nodes {nodes} = {world} process{'es' if world > 1 else ''}"
    if dist.is_available() and dist.is_initialized():
        group = _JOINED.get("group") or current(backend)
        if group.world_size != world:
            raise ValueError(f"the initialised torch.distributed group has {group.world_size} processes, but the run "
                             f"asks for {asked}")
        return _run_joined(fn, group, args, log)
    env = launch_env()
    if env is not None:
        if env.world_size != world:
            how = "WORLD_SIZE" if env.launcher == "torchrun" else "SLURM_STEP_NUM_TASKS / SLURM_NTASKS"
            raise ValueError(f"{env.launcher} started {env.world_size} processes ({how}={env.world_size}), but the run "
                             f"asks for {asked}; make them match (e.g. torchrun --nnodes {nodes} --nproc-per-node "
                             f"{devices}, or srun --nodes {nodes} --ntasks-per-node {devices})")
        # joined once per process and kept (several runs: --seeds, k-fold, ablation), left at exit
        group = _JOINED["group"] = join(env, backend)
        atexit.register(_leave)
        return _run_joined(fn, group, args, log)
    if nodes > 1:
        raise ValueError(f"--nodes {nodes}: a multi-node run needs a launcher on every node (torchrun --nnodes {nodes} "
                         f"--nproc-per-node {devices} --rdzv-endpoint HOST:PORT ..., or srun); without one only "
                         f"--devices N on this node is started here")
    if backend == "nccl" and torch.cuda.device_count() < devices:
        raise ValueError(f"--devices {devices} on CUDA, but {torch.cuda.device_count()} GPU(s) are visible")
    threads = max(1, local_cores() // devices) if backend == "gloo" else None
    return spawn(fn, world, args, backend=backend, log=log, threads=threads)


def wrap(model: torch.nn.Module, group: Group | None) -> torch.nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (the model itself without a group).

    ``find_unused_parameters`` is on: heads whose output a loss ignores (an auxiliary classifier under a plain
    MSE) get no gradient and must not stall the all-reduce.
    """
    if group is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [group.device.index] if group.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


# -- the epoch's data ---------------------------------------------------------------------------------
def epoch_order(n: int, batch_size: int, seed: int) -> list[int]:
    """The sample order of the one-process loop's epoch: ``DataLoader(shuffle=True)`` with a generator seeded
    ``seed`` (the loop seeds it ``seed * 100003 + epoch``), as that loader draws it."""
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(range(n), batch_size=batch_size, shuffle=True, generator=gen, collate_fn=list)
    return [i for batch in loader for i in batch]


class EpochShards(DistributedSampler):
    """This rank's part of every global batch of an epoch (``set_epoch`` before each; module docstring).

    Use with ``DataLoader(batch_size=sampler.rank_batch, sampler=sampler)``; once an iteration started,
    ``weights[k]`` is the loss weight of this rank's batch ``k`` (1 for full global batches).

    Args:
        dataset: the training split.
        batch_size: the global batch (divisible by ``num_replicas``).
        num_replicas: the world size.
        rank: this rank.
        seed: the run's data seed; epoch ``e`` is drawn with ``seed + e`` as the one-process loop draws it.

    Raises:
        ValueError: ``batch_size`` is not divisible by ``num_replicas``.
    """

    def __init__(self, dataset, *, batch_size: int, num_replicas: int, rank: int, seed: int) -> None:
        if batch_size % num_replicas:
            raise ValueError(f"batch_size {batch_size} is not divisible by the world size {num_replicas}")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.batch_size = batch_size
        self.rank_batch = batch_size // num_replicas
        self.weights: list[float] = []

    def plan(self) -> list[tuple[list[int], float]]:
        """Per global batch: this rank's sample indices and its loss weight."""
        n, big, world, r = len(self.dataset), self.batch_size, self.num_replicas, self.rank
        order = epoch_order(n, big, self.seed + self.epoch)
        out: list[tuple[list[int], float]] = []
        for k in range(0, n, big):
            chunk = order[k:k + big]
            if len(chunk) == big:
                out.append((chunk[r * self.rank_batch:(r + 1) * self.rank_batch], 1.0))
                continue
            mine = [chunk[i] for i in np.array_split(np.arange(len(chunk)), world)[r]]
            if mine:
                out.append((mine, len(mine) * world / len(chunk)))
            else:  # fewer samples than ranks: a duplicate that counts for nothing keeps the collectives in step
                out.append(([chunk[0]], 0.0))
        return out

    def __iter__(self) -> Iterator[int]:
        plan = self.plan()
        self.weights = [w for _, w in plan]
        return iter([i for idx, _ in plan for i in idx])

    def __len__(self) -> int:
        return sum(len(idx) for idx, _ in self.plan())
