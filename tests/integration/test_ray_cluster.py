"""Engine steps as Ray jobs on a real two-node Ray cluster, writing into one shared DuckLake.

A head node and a worker node are separate ``ray start`` processes on loopback; only the
worker has the custom resource ``shard_worker`` that the test config's ``step_resources`` asks
for, so every ``pass_rates`` shard must run there. The lake is a PostgreSQL catalog (real
server on loopback) with a shared data path; the model is ``vllm serve`` of the small model.
Three shards are launched through ``dagster_project.deployments.ray``; the worker node is
killed mid-shard (every process of it, as when a machine dies) and started again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from dagster_project.partitions import register_shard_partitions
from dagster_project.pools import ensure_pools
from r1_assets.config import load_config
from r1_assets.difficulty import sync_shards
from r1_assets.engines import generation_id, params_hash
from r1_assets.storage import Lineage, Store
from r1_assets.text import problem_id
from tests.model_support import VllmServer, free_port
from tests.paths import REPO_ROOT

pytestmark = [pytest.mark.ray, pytest.mark.model]

PROBLEMS = [(f"What is {a} + {b}?", str(a + b)) for a, b in zip(range(3, 12), range(40, 49))]
SHARD_SIZE, N_SAMPLES = 3, 2
SHARDS = ["shard-00000", "shard-00001", "shard-00002"]
PER_SHARD = SHARD_SIZE * N_SAMPLES
BIN = Path(sys.executable).parent


class RayCluster:
    """``ray start --head`` and ``ray start --address`` as separate process groups on loopback.

    Every process of a node carries ``R1_TEST_RAY_NODE=<tag>`` in its environment (Ray's
    workers and job drivers inherit the raylet's), so a node can be killed whole, job
    drivers included, as a dying machine would; Ray itself leaves a driver's children behind
    when only the raylet dies on a shared host.
    """

    def __init__(self, env: dict[str, str]):
        self.tag = uuid.uuid4().hex[:8]
        # Short: Ray's unix socket paths live under it (108-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix="r1-ray-", dir="/tmp")
        self.gcs = f"127.0.0.1:{free_port()}"
        self.dashboard_port = free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(Path(self.temp_dir) / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
             "--num-gpus", "0", "--object-store-memory", str(80 * 2**20),
             "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
             "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()), *args],
            env={**env, "R1_TEST_RAY_NODE": f"{self.tag}-{name}"}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_head(self) -> None:
        # A dead node is noticed after 3 missed 1 s health checks (default 5 x 3 s).
        env = {**self.env, "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
        env.pop("PGPASSWORD", None)  # the head runs no step: only the worker node gets the secret
        self._start("head", ["--head", "--port", self.gcs.split(":")[1], "--dashboard-host", "127.0.0.1",
                             "--dashboard-port", str(self.dashboard_port), "--ray-client-server-port", str(free_port()),
                             "--include-dashboard", "true", "--num-cpus", "1", "--resources", '{"head_node": 1}',
                             "--temp-dir", self.temp_dir], env)

    def start_worker(self) -> None:
        self.worker = f"worker{len(self.procs)}"
        self._start(self.worker, [
            "--address", self.gcs, "--num-cpus", "2", "--resources", json.dumps({"shard_worker": len(SHARDS)})], self.env)

    def client(self, timeout_s: float = 300):
        """The job client, once the head's dashboard answers (it starts last, and slowly on a
        loaded machine); the nodes' and dashboard's logs when it never does."""
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return JobSubmissionClient(self.address)
            except Exception as err:  # dashboard not up yet
                if time.monotonic() > deadline:
                    raise AssertionError(f"Ray dashboard at {self.address} not up after {timeout_s}s: {err}\n"
                                         f"{self.logs(jobs=False)}") from None
                time.sleep(1)

    def alive_nodes(self) -> list[dict]:
        from ray.util.state import list_nodes

        return [{"node_id": n.node_id, "resources_total": n.resources_total or {}}
                for n in list_nodes(address=self.address, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)]

    def wait_for_nodes(self, n: int, timeout_s: float = 240) -> list[dict]:
        """The alive nodes once there are ``n``. A worker whose ``ray start`` gave up is started
        again (twice at most): Ray gives a raylet a fixed 30 s to register with the GCS, which a
        loaded 2-core machine can miss; a cluster manager would start the node again too."""
        deadline, restarts = time.monotonic() + timeout_s, 0
        while time.monotonic() < deadline:
            if self.procs[self.worker].poll() is not None and restarts < 2:
                restarts += 1
                self.kill(self.worker)  # what it left running, which could still register late
                self.start_worker()
            try:
                nodes = self.alive_nodes()
                if len(nodes) == n:
                    return nodes
            except Exception:  # state API not up yet
                pass
            time.sleep(1)
        raise AssertionError(f"{n} Ray nodes not alive after {timeout_s}s:\n{self.logs()}")

    def node_pids(self, name_prefix: str) -> list[int]:
        """Processes of the nodes named ``name_prefix*``: the ``ray start`` session (Ray's agents
        rewrite their environment block with their process title) plus whatever carries the
        node's marker in its environment (job drivers, which Ray starts in sessions of their own)."""
        marker = f"R1_TEST_RAY_NODE={self.tag}-{name_prefix}".encode()
        sessions = {proc.pid for name, proc in self.procs.items() if name.startswith(name_prefix)}
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                state, _, _, session = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
                if state == "Z":  # dead already, waiting to be reaped
                    continue
                if int(session) in sessions or any(v.startswith(marker) for v in (entry / "environ").read_bytes().split(b"\0")):
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
        return pids

    def kill(self, name_prefix: str, timeout_s: float = 10) -> None:
        """Kill the nodes' processes as a dying machine would: all at once. They are frozen
        first (SIGSTOP), rescanning until no new one appears, then killed: killed one by one,
        a process could fork after the scan (CI: "Ray processes left behind") or see another
        die and report it (a job supervisor reporting its driver's exit -9 instead of Ray
        noticing the node's death)."""
        deadline = time.monotonic() + timeout_s
        frozen: set[int] = set()
        while time.monotonic() < deadline:
            found = set(self.node_pids(name_prefix))
            if not found:
                return
            if found <= frozen:
                for pid in frozen:
                    self._signal(pid, signal.SIGKILL)
                frozen.clear()
                continue
            for pid in found - frozen:
                self._signal(pid, signal.SIGSTOP)
            frozen |= found

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def logs(self, jobs: bool = True) -> str:
        """The nodes' logs, the dashboard's, and every unfinished or failed job's own log, for
        failure messages."""
        files = [*Path(self.temp_dir).glob("*.log"), *Path(self.temp_dir).glob("session_latest/logs/dashboard.*")]
        text = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in files)
        if not jobs:
            return text
        try:
            client = self.client()
            for job in client.list_jobs():
                if job.status.value != "SUCCEEDED":
                    text += f"\n--- job {job.submission_id} {job.status.value} {job.message}\n"
                    text += client.get_job_logs(job.submission_id)[-3000:]
        except Exception as err:  # the head itself is gone
            text += f"\n(no job list: {err})"
        return text

    def stop(self) -> None:
        self.kill("")  # every node of this cluster, whatever state it is in
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def ray_cluster(r1_home, postgres_catalog):
    """A two-node cluster (head + one worker with a ``shard_worker`` slot per shard); stopped at the end,
    failures included. After ``postgres_catalog``: the worker node's environment holds
    PGPASSWORD, as a deployment's worker pods would."""
    cluster = RayCluster({**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO_ROOT)})
    try:
        cluster.start_head()
        cluster.start_worker()
        # Up before the test starts its model server, which would compete with Ray's start-up.
        cluster.client()
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        cluster.stop()
    assert not cluster.node_pids(""), "Ray processes left behind"


def _config(path: Path, catalog: str, data_path: Path, base_url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "sources": [{"name": "t", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 5}],
        "storage": {"backend": "ducklake", "catalog": catalog, "data_path": str(data_path) + "/"},
        # batch_size 1 and one request at a time: a checkpoint per sample, so a kill lands mid-shard.
        # No GPU here; the custom resource pins every shard to the worker node.
        "models": {"small": {"name": "small_model", "engine": "openai", "base_url": base_url,
                             "served_model_name": "small", "max_concurrency": 1, "batch_size": 1,
                             "request_timeout_s": 120,
                             "step_resources": {"num_gpus": 0, "custom": {"shard_worker": 1}}}},
        "difficulty": {"model": "small", "shard_size": SHARD_SIZE, "prompt_templates": {"math": "{problem}"},
                       "sampling": {"n": N_SAMPLES, "temperature": 0.7, "top_p": 0.95, "max_tokens": 16, "seed": 0}},
        "verification": {"workers": 1},
    }))
    return path


def _seed_lake(config_path: Path, home: Path) -> Store:
    """PROBLEMS as clean_problems, cut into three shards the way the clean_problems step does."""
    store = Store.from_config(load_config(config_path), home)
    frame = pl.DataFrame({
        "problem_id": [problem_id(p) for p, _ in PROBLEMS], "source": ["t"] * len(PROBLEMS),
        "source_row": list(range(len(PROBLEMS))), "problem": [p for p, _ in PROBLEMS],
        "answer": [a for _, a in PROBLEMS], "run_id": ["seed"] * len(PROBLEMS),
    })
    store.replace_partition("clean_problems", frame, where=None, lineage=Lineage(run_id="seed"))
    assert sync_shards(store, shard_size=SHARD_SIZE)[0] == SHARDS
    return store


def _launch(shard: str, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "dagster_project.deployments.ray",
           "--select", "pass_rates", "--partition", shard]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float, cluster: RayCluster) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        raise AssertionError(f"run still going after {timeout}s:\n{out[-3000:]}\n{cluster.logs()}") from None
    return proc.returncode, out


def _samples(store: Store) -> pl.DataFrame:
    return store.query(
        "SELECT s.shard, g.problem_id, g.sample_idx, g.generation_id, g.run_id FROM generations g "
        "JOIN problem_shards s USING (problem_id) ORDER BY 1, 2, 3")


# Its phases have their own deadlines (the kill within 300 s, each run's end within 180 s);
# this guard is above their sum: on a CPU without native bfloat16 the model runs in float32 at
# about half the speed, and the test passed its phases but not the old 600 s guard (CI, 2 cores).
@pytest.mark.timeout(1500)
def test_pass_rates_shards_run_as_ray_jobs_and_survive_a_killed_worker_node(
        tmp_path, r1_home, postgres_catalog, converted_small_model, ray_cluster):
    server = VllmServer(converted_small_model, served_name="small", max_num_seqs=4).start(tmp_path / "serve.log")
    try:
        config = _config(tmp_path / "ray.yaml", postgres_catalog, tmp_path / "lake-data", server.base_url)
        store = _seed_lake(config, r1_home)
        with dg.DagsterInstance.get() as instance:
            assert register_shard_partitions(instance, store) == SHARDS
            ensure_pools(instance, {"gpu": len(SHARDS), "duckdb_writer": 1})  # a cluster's gpu pool
        # Steps get R1_CONFIG and this R1_HOME (empty: the lake is PostgreSQL + a shared path).
        step_home = tmp_path / "step-home"
        env = {**os.environ, "R1_CONFIG": str(config), "R1_HOME": str(step_home), "RAY_ADDRESS": ray_cluster.address}
        client = ray_cluster.client()
        nodes = ray_cluster.wait_for_nodes(2)
        first_worker = next(n["node_id"] for n in nodes if "shard_worker" in n["resources_total"])

        runs = {shard: _launch(shard, env) for shard in SHARDS}
        try:
            # The shards run at once on the worker. Kill it after a shard's first checkpoint,
            # before its last.
            deadline, killed_shard = time.monotonic() + 300, None
            while killed_shard is None and time.monotonic() < deadline:
                counts = _samples(store).group_by("shard").len()
                partial = counts.filter((pl.col("len") > 0) & (pl.col("len") < PER_SHARD))
                if partial.height:
                    ray_cluster.kill("worker")
                    killed_shard = partial["shard"][0]
                ended = [s for s, p in runs.items() if p.poll() is not None]
                assert killed_shard or not ended, f"{ended} ended before the kill:\n{runs[ended[0]].stdout.read()[-3000:]}"
                time.sleep(0.1)
            assert killed_shard, f"no shard was mid-way within 300s:\n{ray_cluster.logs()}"
            time.sleep(2)  # a commit already on its way lands; none after it may
            kept = _samples(store)

            # Each run ends: the killed shard's step fails its health check with Ray's reason, and
            # so does every other shard that was running or queued there; none is left hanging.
            failed = []
            for shard, proc in runs.items():
                rc, out = _finish(proc, timeout=180, cluster=ray_cluster)
                if rc != 0:
                    assert "RUN_FAILURE" in out and "Discovered failed Ray job" in out and "node has died" in out, out[-4000:]
                    failed.append(shard)
            assert killed_shard in failed
            # Nothing of the dead node writes on: the checkpoints stay as they were at the kill.
            assert _samples(store)["generation_id"].to_list() == kept["generation_id"].to_list()

            # A new worker node; the failed shards are materialized again, there.
            ray_cluster.start_worker()
            ray_cluster.wait_for_nodes(2)
            runs = {shard: _launch(shard, env) for shard in failed}
            for shard, proc in runs.items():
                rc, out = _finish(proc, timeout=180, cluster=ray_cluster)
                assert rc == 0 and "RUN_SUCCESS" in out, f"{shard}:\n{out[-4000:]}"
        finally:
            for proc in runs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)

        # Every shard ran as a Ray job on a worker node; the failed ones twice.
        jobs = [j for j in client.list_jobs() if (j.metadata or {}).get("dagster/op") == "pass_rates"]
        by_shard = {}
        with dg.DagsterInstance.get() as instance:
            for job in jobs:
                run = instance.get_run_by_id(job.metadata["dagster/run-id"])
                by_shard.setdefault(run.tags["dagster/partition"], []).append(job)
        assert sorted(by_shard) == SHARDS
        statuses = {s: sorted(j.status.value for j in js) for s, js in by_shard.items()}
        assert statuses == {s: ["FAILED", "SUCCEEDED"] if s in failed else ["SUCCEEDED"] for s in SHARDS}
        worker_nodes = {n["node_id"] for n in ray_cluster.alive_nodes() if "shard_worker" in n["resources_total"]}
        killed_job = next(j for j in by_shard[killed_shard] if j.status.value == "FAILED")
        assert killed_job.driver_node_id == first_worker
        assert {j.driver_node_id for js in by_shard.values() for j in js if j.status.value == "SUCCEEDED"} == worker_nodes
        assert first_worker not in worker_nodes

        # Every sample exactly once; the failed shards kept their checkpoints and generated only the rest.
        samples = _samples(store)
        assert samples.height == len(PROBLEMS) * N_SAMPLES
        assert samples["generation_id"].n_unique() == samples.height
        assert samples.group_by("problem_id").len()["len"].to_list() == [N_SAMPLES] * len(PROBLEMS)
        assert set(kept["generation_id"]) <= set(samples["generation_id"])
        killed_runs = set(kept["run_id"])
        assert samples.filter(pl.col("run_id").is_in(killed_runs)).height == kept.height
        resumed = samples.filter(pl.col("shard") == killed_shard)
        rates = store.query("SELECT problem_id, k FROM pass_rates ORDER BY 1")
        assert rates.height == len(PROBLEMS) and rates["k"].to_list() == [N_SAMPLES] * len(PROBLEMS)

        # What a clean run of the killed shard stores: each (problem, sample) once, under the id
        # its model, sampling and prompts give it (the resume key; a clean run stores exactly these).
        cfg = load_config(config)
        ph = params_hash("small_model", cfg.difficulty.sampling, cfg.difficulty.prompt_templates)
        killed_problems = store.query("SELECT problem_id FROM problem_shards WHERE shard = $shard",
                                      {"shard": killed_shard})["problem_id"]
        clean = sorted((pid, idx, generation_id("pass_rate", pid, "small_model", ph, idx))
                       for pid in killed_problems for idx in range(N_SAMPLES))
        assert sorted(resumed.select("problem_id", "sample_idx", "generation_id").rows()) == clean
        # The steps wrote no file locally: their R1_HOME stayed empty (no database, no catalog).
        assert not [p for p in step_home.rglob("*") if p.is_file()], sorted(step_home.rglob("*"))
    finally:
        server.stop()
