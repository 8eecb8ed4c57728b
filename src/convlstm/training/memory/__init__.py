r"""How much memory a training step will take, known before it runs, and the guard that
:func:`convlstm.training.fit` applies with it.

Where each part lives (every name below is importable from ``convlstm.training.memory``):

==================== ==========================================================================
``units.py``         byte counts as people write them: :func:`format_bytes`,
                     :func:`parse_memory_limit` (``--memory-limit 8GB``)
``available.py``     the memory a process may still take: ``/proc/meminfo``, cgroups v1 and v2,
                     psutil, CUDA's free memory (:func:`available_memory`, :class:`AvailableMemory`)
``probe.py``         the bytes of a training step, counted on fake tensors under a dispatch mode
                     (:class:`TrainingMemoryProbe`, :class:`MemoryEstimate`,
                     :func:`estimate_training_memory`, :data:`HEAP_FACTOR`, :data:`MMAP_THRESHOLD_MAX`)
``batch_size.py``    the largest batch size whose step fits in a budget (:func:`choose_batch_size`,
                     :class:`BatchChoice`, :data:`HEADROOM`)
``workers.py``       what ``DataLoader`` worker processes add: batches in flight and each
                     process (:class:`LoaderWorkers`, :data:`PREFETCH_FACTOR`, :data:`WORKER_OVERHEAD`)
``guard.py``         what ``fit`` does with them before training (:func:`guard_training_memory`,
                     :class:`MemoryBudgetError`)
==================== ==========================================================================

How the estimate is made
------------------------
1. **The step is run, on fake tensors.** A copy of the model whose parameters and buffers are
   :class:`torch._subclasses.fake_tensor.FakeTensorMode` tensors runs two real training steps:
   forward, the loss (the :class:`~convlstm.training.ForecastModule`'s own ``training_step``,
   regularization included), backward and an AdamW step. Every operation computes the shapes,
   strides and dtypes of its outputs and nothing else: no memory is allocated and no arithmetic
   is done, so the probe costs about a second whatever the batch size and cannot itself run out
   of memory. A :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every storage the
   step creates and, through weak references, when it is freed: the peak of the live tensor
   bytes is *measured*, not modelled, for the actual model, loss, ConvLSTM compute paths (which
   change with the batch size, see :mod:`convlstm._paths`), autocast casts, workspace buffers
   (:mod:`convlstm._workspace`), gradients, optimizer state and the batch (with the next batch
   that Lightning's loader already holds). The second step is the steady state: it holds the
   optimizer state and reuses the workspaces as every later step does.
2. **Resident memory is more than tensor bytes.** glibc's ``malloc`` serves blocks under its
   mmap threshold (which rises with use up to 32 MiB) from its heap, where freed blocks stay
   resident and fragment; blocks over it are mapped and unmapped, exactly. The estimate counts
   every tensor storage under 32 MiB :data:`HEAP_FACTOR` (1.5) times and larger ones once. The
   factor is the median of the ratio (peak resident memory - tensor bytes above 32 MiB) /
   (tensor bytes under 32 MiB) measured over 12 configurations (bench.py's four, keras-nextframe,
   shi2015 and convlstm-warp variants; peaks of 0.23 to 1.85 GB, medians of 3 fresh processes):
   1.14 to 2.2, median 1.5 (a 38 MB run had 3.1). With glibc's threshold fixed low
   (``MALLOC_MMAP_THRESHOLD_=65536``, every block mapped) the peaks were -6% to +9% of the tensor
   bytes, except shi2015-1x256 (+27%: 70 MB that kernels take outside torch's allocator), so the
   tensor bytes themselves are right; the spread of the factor is the estimate's main error.
   ``fit``, ``evaluate`` and ``predict`` keep every block in the heap
   (:func:`convlstm._heap.keep_freed_memory`: no block is mapped on its own, so a step reuses
   the pages the previous one touched instead of faulting fresh ones in); the estimate then
   counts *every* storage :data:`HEAP_FACTOR` times (:func:`~convlstm.training.memory.probe.heap_block_limit`).
   Measured that way (``benchmarks/memory_estimate.py --keep-freed-memory``, 7 configurations
   from 0.29 to 3.9 GB), the estimate was 0.99 to 1.32 times the peak.
3. **Not counted:** memory that kernels take outside torch's allocator (oneDNN scratchpads,
   NNPACK's workspace, FFT buffers: 10 to 70 MB measured), Python objects, and the model's parameters and buffers themselves, which the process already holds
   (the estimate is what training *adds*; with ``precision="64"`` the float64 copy of the
   parameters is added).
4. **DataLoader workers** are added beside the step (``workers.py``): with :math:`W` workers, each
   keeping ``prefetch_factor`` :math:`p` batches in flight, :math:`L W (p B s + o)` bytes at batch
   size :math:`B`, with :math:`s` the bytes of one float32 sample (``x`` and ``y``), :math:`o`
   (:data:`WORKER_OVERHEAD`, 64 MiB) a forked worker's own memory, stated from a measurement, and
   :math:`L` the loaders whose persistent workers live at once (training and validation: 2).

The result is checked against the peak resident set size (``VmHWM``) a fresh process adds while
it runs the same training steps: ``benchmarks/memory_estimate.py`` and ``tests/test_memory.py``;
the table is in ``benchmarks/RESULTS.md``.

What is measured and what is assumed, by precision:

================ =============================================================================
``"32"``         measured (float32 parameters and batch)
``"64"``         measured (float64 parameters and batch) + the float64 parameters (assumed
                 replacing the float32 ones, as Lightning converts the module)
``"bf16-mixed"`` measured under ``torch.autocast(dtype=torch.bfloat16)`` (the casts and the
                 bfloat16 activations are seen; paths that autocast turns off are followed)
``"16-mixed"``   on CPU as ``"bf16-mixed"`` (Lightning trains it so); on CUDA under float16
                 autocast
================ =============================================================================

What is compared with it: :func:`available_memory` (``MemAvailable`` of ``/proc/meminfo``, or a
cgroup's limit minus its usage when that is smaller; psutil elsewhere), of which a fit may use
:data:`HEADROOM` (80%), or an explicit ``memory_limit``.

CUDA (**untested: no GPU was available when this was written**): the fake run follows CPU
paths, so on a CUDA device :class:`TrainingMemoryProbe` runs two real steps on a copy of the
model on that device and reads ``torch.cuda.max_memory_allocated``; :func:`available_memory`
reads ``torch.cuda.mem_get_info``. :func:`convlstm.training.fit` applies the guard to CPU runs
only and says so for others.

Example::

    >>> from convlstm.training.memory import (available_memory, choose_batch_size,
    ...                                       estimate_training_memory, format_bytes)
    >>> model = convlstm.models.create("keras-nextframe", output_steps=3)
    >>> est = estimate_training_memory(model, (6, 128, 128, 1), (3, 128, 128, 1), batch_sizes=(1, 4))
    >>> print(format_bytes(est.total(4)), format_bytes(est.per_sample_bytes))
    >>> choice = choose_batch_size(est, requested=16, available=available_memory())
    >>> choice.chosen, choice.summary()
"""
from .available import AvailableMemory, available_memory
from .batch_size import HEADROOM, BatchChoice, choose_batch_size
from .guard import MemoryBudgetError, guard_training_memory
from .probe import HEAP_FACTOR, MMAP_THRESHOLD_MAX, MemoryEstimate, TrainingMemoryProbe, estimate_training_memory
from .units import format_bytes, parse_memory_limit
from .workers import PREFETCH_FACTOR, WORKER_OVERHEAD, LoaderWorkers

__all__ = ["estimate_training_memory", "TrainingMemoryProbe", "MemoryEstimate", "choose_batch_size", "BatchChoice",
           "available_memory", "AvailableMemory", "parse_memory_limit", "format_bytes", "MemoryBudgetError",
           "guard_training_memory", "HEADROOM", "HEAP_FACTOR", "MMAP_THRESHOLD_MAX", "LoaderWorkers",
           "PREFETCH_FACTOR", "WORKER_OVERHEAD"]
