"""The machine a benchmark ran on, as every `bench/` script reports it.

Speed here depends on more than the core count: ONNX Runtime's int8 kernels use VNNI (AVX-512 or AVX) where
the CPU has it and plain AVX2 otherwise, so the same benchmark on a host without VNNI runs int8 several times
slower relative to fp32. Each script puts these fields at the top of its JSON.
"""
import os
import platform

FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")  # the ones that change ONNX Runtime's kernels


def machine() -> dict:
    "Cores, Python, the CPU model and which of `FEATURES` it has (Linux: from /proc/cpuinfo)."
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.partition(":")[::2] for line in f.read().split("\n\n")[0].splitlines())  # the first core
        info = {k.strip(): v.strip() for k, v in info.items()}
        model, flags = info.get("model name", model), set(info.get("flags", "").split())
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "cpu_model": model,
            "cpu_features": [f for f in FEATURES if f in flags]}


if __name__ == "__main__":
    print(machine())
