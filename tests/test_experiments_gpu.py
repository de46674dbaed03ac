"""The prepared accelerator run (experiments/gpu.py, scripts/gpu.sh): its steps, resume and limits."""

import dataclasses
import json
import subprocess
import tarfile

import numpy as np
import pytest

from experiments import gpu

ROOT = gpu.ROOT


def test_correctness_step_checks_what_it_claims(tmp_path):
    scale = dataclasses.replace(gpu.SCALES["smoke"], width=0.0625, check_archs=("vgg16",))
    result = gpu.correctness(scale, tmp_path, tmp_path, None)
    row = result["archs"]["vgg16"]
    assert result["ok"] and row["exits_agree"] and row["compiles_after_warmup"] == 0
    assert row["max_prob_diff_batch1"] <= gpu.PROBS_ATOL and len(row["batch1_ms_per_exit"]) == 7
    assert len(np.unique(np.nonzero(row["exit_histogram"])[0])) >= 3  # the thresholds spread the images


def test_compile_counter_sees_a_fresh_compile():
    import jax
    import jax.numpy as jnp

    with gpu._CompileCounter() as counter:
        jax.jit(lambda x: x * 3 + 1)(jnp.ones(7))
    assert counter.count >= 1


def test_run_resumes_keeps_to_its_budget_and_its_file_limit(tmp_path, monkeypatch, capsys):
    calls = []

    def fake(name):
        def step(scale, out, work, data_dir):
            calls.append(name)
            if name == "bench":
                raise RuntimeError("out of memory")
            return {"value": name}

        return step

    monkeypatch.setattr(gpu, "RUNNERS", {name: fake(name) for name in gpu.STEPS})
    out, work = tmp_path / "out", tmp_path / "work"
    first = gpu.run("smoke", out, work=work, steps=("device", "correctness"))
    assert calls == ["device", "correctness"] and first["steps"]["device"]["value"] == "device"
    # a second call continues: finished steps are skipped, a failed one is recorded and retried later
    second = gpu.run("smoke", out, work=work)
    assert calls == ["device", "correctness", "bench", "seed000_vgg16_cifar10"]
    assert second["steps"]["bench"]["error"] == "RuntimeError: out of memory"
    assert "device: done before, skipped" in capsys.readouterr().out
    assert "bench failed: RuntimeError: out of memory" in (out / "gpu_results.md").read_text()
    # a step that would not fit in the time left is not started
    third = gpu.run("smoke", out, work=work, time_budget=0.0)
    assert calls[-1] == "seed000_vgg16_cifar10" and third["not_started"] == ["bench"]
    assert json.loads((out / "gpu_results.json").read_text())["not_started"] == ["bench"]
    with pytest.raises(SystemExit, match="holds a smoke run"):
        gpu.run("full", out, work=work)
    for i in range(gpu.MAX_FILES):
        (out / f"extra{i}.txt").write_text("x")
    with pytest.raises(RuntimeError, match="at most 8 plain files"):
        gpu._write(out, third)


def test_bundle_writes_loadable_archives_with_checksums(tmp_path):
    from mexjax import data
    from tests.data.makers import write_image_folder

    source = tmp_path / "shared"
    write_image_folder(
        source / "tinyimagenet200-20k", {"train": {"n1": 3, "n2": 2}, "val": {"n1": 2}}, size=(64, 64)
    )
    with tarfile.open(source / "tinyimagenet200-20k.tar.gz", "w:gz") as tar:
        tar.add(source / "tinyimagenet200-20k", arcname="tinyimagenet200-20k")
    write_image_folder(source / "cifar10-jpeg75", {"test": {"cat": 2}}, size=(32, 32))
    with tarfile.open(source / "cifar10-jpeg75.tar.gz", "w:gz") as tar:
        tar.add(source / "cifar10-jpeg75", arcname="cifar10-jpeg75")
    import hashlib

    sums = "".join(f"{hashlib.sha256((source / n).read_bytes()).hexdigest()}  {n}\n"
                   for n in ("tinyimagenet200-20k.tar.gz", "cifar10-jpeg75.tar.gz"))  # fmt: skip
    (source / "SHA256SUMS").write_text(sums)
    dest = tmp_path / "bundle"
    sizes = gpu.bundle(dest, data_dir=source)
    assert set(sizes) == {"cifar10-jpeg75.tar.gz", "tinyimagenet200-20k.tar.gz"}
    listed = (dest / "SHA256SUMS").read_text()
    assert all(name in listed for name in sizes)
    small = data.load("tinyimagenet", "train", data_dir=dest, progress=False)  # checked against SHA256SUMS
    assert small.images.shape == (5, 32, 32, 3) and sorted(np.bincount(small.labels)) == [2, 3]


@pytest.mark.slow  # the whole rehearsal (~5 min); its committed run: experiments/results/gpu_smoke.md
def test_gpu_script_rehearses_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu.sh"), "--scale", "smoke", "--out", str(out),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "gpu_results.json").read_text())
    assert set(record["steps"]) == set(gpu.STEPS) and not any("error" in r for r in record["steps"].values())
    assert record["steps"]["correctness"]["ok"] and len(list(out.iterdir())) <= gpu.MAX_FILES
