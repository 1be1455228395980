"""Multi-worker training for ``train.py``: one data-parallel job over every server of the run.

``distribution=multi_worker`` (docs/workload.md): every server runs ``train.py`` with the same
``run.env`` apart from ``INSTANCE_INDEX``; ``CLUSTER_HOSTS`` lists every server's reserved private
IP (index order) and ``TRAINING_PORT`` the port of TensorFlow's gRPC server. From them each process
builds ``TF_CONFIG`` and joins ``tf.distribute.MultiWorkerMirroredStrategy`` (NCCL between GPUs,
RING on CPU). Worker 0 is the chief.

Training is a custom loop rather than ``model.fit``: Keras 3's ``fit`` cannot reduce its metrics
under a multi-worker strategy (it calls ``strategy.reduce(..., axis=0)`` on scalars), so each step
runs under ``strategy.run`` and sums loss and correct predictions across replicas itself.

Checkpoints (``checkpoints.py``): the chief alone saves them, to its own ``vm-0/checkpoints/``;
at the start every worker restores the same one: the chief picks the newest valid checkpoint, an
all-reduce tells every worker its epoch, and each worker loads that epoch's checkpoint.

Every collective carries ``COLLECTIVE_TIMEOUT_S``: when a server dies, its peers' next gradient
exchange fails (at once when the connection is refused or reset, at the latest after the timeout),
``train.py`` writes ``_FAILED`` with the reason, and the process exits instead of hanging.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from dataclasses import dataclass
from typing import Any

DEFAULT_TRAINING_PORT = 23456


class ClusterConfigError(ValueError):
    """CLUSTER_HOSTS / INSTANCE_INDEX / TRAINING_PORT do not describe a cluster this server is in."""


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[str, ...]
    port: int
    index: int

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def parse_cluster(cluster_hosts: str, port: int, index: int, count: int) -> Cluster:
    """The cluster from run.env values; every problem named with the key to fix."""
    hosts = tuple(h.strip() for h in cluster_hosts.split(",") if h.strip())
    if len(hosts) < 2:
        raise ClusterConfigError(
            f"CLUSTER_HOSTS must list at least 2 servers for multi_worker; got {hosts!r}"
        )
    for host in hosts:
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise ClusterConfigError(f"CLUSTER_HOSTS: {host!r} is not an IPv4 address") from exc
    if count and count != len(hosts):
        raise ClusterConfigError(f"INSTANCE_COUNT is {count} but CLUSTER_HOSTS lists {len(hosts)} servers")
    if not 0 <= index < len(hosts):
        raise ClusterConfigError(f"INSTANCE_INDEX {index} is outside CLUSTER_HOSTS (0..{len(hosts) - 1})")
    if not 1024 <= port <= 65535:
        raise ClusterConfigError(f"TRAINING_PORT {port} must be from 1024 to 65535")
    return Cluster(hosts, port, index)


def worker_address(host: str, port: int) -> str:
    """``host:port`` as this process reaches it.

    On a real VM: the reserved private IP and the training port. In the sandbox (simulated servers
    share one machine's loopback), ``GPU_WORKLOAD_LOOPBACK_PORTS=<base>`` maps the server at
    ``a.b.c.d`` to ``127.0.0.1:<base + d>``: TensorFlow's gRPC server listens on ``0.0.0.0:<port>``,
    so processes on one host need distinct ports, and the sandbox gives each run's VPC its own
    block of 256 ports (docs/sandbox.md).
    """
    base = (
        os.environ.get("GPU_WORKLOAD_LOOPBACK_PORTS", "")
        if os.environ.get("GPU_WORKLOAD_SANDBOX") == "1"
        else ""
    )
    if base:
        return f"127.0.0.1:{int(base) + int(host.rsplit('.', 1)[1])}"
    return f"{host}:{port}"


def tf_config(cluster: Cluster) -> dict[str, Any]:
    return {
        "cluster": {"worker": [worker_address(h, cluster.port) for h in cluster.hosts]},
        "task": {"type": "worker", "index": cluster.index},
    }


def make_strategy(tf: Any, cluster: Cluster, collective_timeout_s: float, use_nccl: bool) -> Any:
    """Join the cluster (blocks until every worker is up). Must be the first TensorFlow op."""
    os.environ["TF_CONFIG"] = json.dumps(tf_config(cluster))
    impl = tf.distribute.experimental.CommunicationImplementation
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=impl.NCCL if use_nccl else impl.RING,
        timeout_seconds=collective_timeout_s,
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def local_eval(model: Any, x: Any, y: Any, batch: int) -> tuple[float, float]:
    """Loss and accuracy on this process only (no collective: the weights are the same everywhere)."""
    import numpy as np

    if len(x) == 0:
        return float("nan"), float("nan")
    losses, correct = [], 0
    for start in range(0, len(x), batch):
        probs = np.asarray(model(x[start : start + batch].astype("float32"), training=False), dtype="float64")
        labels = y[start : start + batch]
        picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
        losses.append(-np.log(picked))
        correct += int((probs.argmax(axis=1) == labels).sum())
    return float(np.concatenate(losses).mean()), correct / len(x)


def agree_on_epoch(tf: Any, strategy: Any, epoch: int, is_chief: bool) -> int:
    """The chief's ``epoch``, on every worker: one all-reduce (SUM) of ``[epoch, 1]`` from each of
    the chief's replicas and ``[0, 0]`` from the others' (ReduceOp has no MAX)."""
    mine = [float(epoch), 1.0] if is_chief else [0.0, 0.0]

    @tf.function
    def chief_value() -> Any:
        per_replica = strategy.run(lambda: tf.constant(mine))
        return strategy.reduce("SUM", per_replica, axis=None)

    total, chief_replicas = (float(v) for v in chief_value().numpy())
    return round(total / chief_replicas)


def fit_multi_worker(
    *,
    tf: Any,
    keras: Any,
    strategy: Any,
    build_model: Any,
    x_fit: Any,
    y_fit: Any,
    x_val: Any,
    y_val: Any,
    per_replica_batch: int,
    epochs: int,
    learning_rate: float,
    seed: int,
    workers: int,
    is_chief: bool,
    on_epoch_end: Any,
    resume: Any = None,
) -> dict[str, Any]:
    """Train ``build_model()`` over the cluster; the same weights end up on every worker.

    The training set is sharded by worker (``distribute_datasets_from_function``): each worker
    reads its own ``1/workers`` of the examples; the global batch is ``per_replica_batch`` times
    the number of replicas in the whole cluster. Every worker runs the same number of steps per
    epoch (``len(x_fit) // global_batch``) so no collective waits for a worker that ran dry.
    Validation runs on the chief only, locally. Returns the history and the throughput figures.

    ``resume(model, optimizer)`` (checkpoints enabled) restores the same checkpoint on every
    worker and returns ``(epoch, history)``; training then continues at that epoch, with the data
    order an uninterrupted run would have had. ``on_epoch_end(epoch, logs, model, optimizer,
    history)`` runs after every epoch (progress, the chief's checkpoints).
    """
    from checkpoints import epoch_index_batches

    replicas = strategy.num_replicas_in_sync
    global_batch = per_replica_batch * replicas
    steps = len(x_fit) // global_batch
    if steps < 1:
        raise ValueError(
            f"the training set ({len(x_fit)} examples) is smaller than one global batch "
            f"({per_replica_batch} per replica x {replicas} replicas = {global_batch}); lower batch_size"
        )
    x_fit_t, y_fit_t = tf.constant(x_fit.astype("float32")), tf.constant(y_fit)

    with strategy.scope():
        model = build_model()
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        if resume is not None:  # a restore assigns the optimizer's variables: create them now
            optimizer.build(model.trainable_variables)
    start_epoch, history = resume(model, optimizer) if resume is not None else (0, {})
    history = {k: list(v) for k, v in history.items()}

    def dataset_fn(ctx: Any) -> Any:
        # This worker's shard of the examples, in the order of (seed, epoch): see checkpoints.py.
        shard = list(range(ctx.input_pipeline_id, len(x_fit), ctx.num_input_pipelines))
        ds = epoch_index_batches(
            tf,
            shard,
            seed,
            start_epoch,
            epochs,
            ctx.get_per_replica_batch_size(global_batch),
            steps=steps,
            drop_remainder=True,
        )
        return ds.map(lambda idx: (tf.gather(x_fit_t, idx), tf.gather(y_fit_t, idx))).prefetch(2)

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    per_example = keras.losses.SparseCategoricalCrossentropy(reduction=None)

    @tf.function
    def train_step(it: Any) -> tuple[Any, Any]:
        def step(xb: Any, yb: Any) -> tuple[Any, Any]:
            with tf.GradientTape() as tape:
                probs = model(xb, training=True)
                loss = tf.nn.compute_average_loss(per_example(yb, probs), global_batch_size=global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            hits = tf.equal(tf.argmax(probs, axis=-1), tf.cast(yb, tf.int64))
            return loss, tf.reduce_sum(tf.cast(hits, tf.float32))

        loss, correct = strategy.run(step, args=next(it))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", correct, axis=None)

    history.setdefault("loss", [])
    history.setdefault("accuracy", [])
    train_seconds = 0.0
    for epoch in range(start_epoch, epochs):
        started = time.monotonic()
        loss_sum, correct_sum = 0.0, 0.0
        for _ in range(steps):
            loss, correct = train_step(iterator)
            loss_sum += float(loss)
            correct_sum += float(correct)
        train_seconds += time.monotonic() - started
        logs = {"loss": loss_sum / steps, "accuracy": correct_sum / (steps * global_batch)}
        if is_chief and len(x_val):
            logs["val_loss"], logs["val_accuracy"] = local_eval(model, x_val, y_val, global_batch)
        for key, value in logs.items():
            history.setdefault(key, []).append(float(value))
        on_epoch_end(epoch, logs, model, optimizer, history)

    examples = steps * global_batch * (epochs - start_epoch)
    total_eps = examples / train_seconds if train_seconds > 0 else 0.0
    return {
        "model": model,
        "history": history,
        "workers": workers,
        "replicas": replicas,
        "global_batch_size": global_batch,
        "steps_per_epoch": steps,
        "examples_per_second": {
            "total": round(total_eps, 2),
            "per_worker": round(total_eps / workers, 2),
        },
        "train_seconds": round(train_seconds, 3),
        "resumed_from_epoch": start_epoch,
    }
