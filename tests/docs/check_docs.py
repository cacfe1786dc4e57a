#!/usr/bin/python3
"""check_docs.py - the documentation's promises that a test can hold to the code (tests/docs.cmake).

    check_docs.py flags SRC ONNX_TL        README's commands and flags against `onnx-tl CMD --help`
    check_docs.py env SRC                  every OTL_* variable of the READMEs is read by the code
    check_docs.py tests SRC CTEST BUILD    README's Tests section against the registered tests
    check_docs.py bench SRC ONNX_TL TRAIN_STEP NODE   bench/README's scripts and flags, and
                                           small runs of what the benchmarks call

flags: every command of `onnx-tl --help` has a line in README's Commands block; every `--flag` of
that block (per command) and of a backticked `onnx-tl CMD ...` / `CMD --flag` span in README.md or
bench/README.md is named by `onnx-tl CMD --help` and accepted by its parser.
env: every OTL_* name in README.md / bench/README.md is read somewhere (getenv in C, an option()
of CMakeLists.txt, a variable of tools/*.sh).
tests: every backticked test name of README's Tests section (`suite.name`, `suite.*`,
`suite.<model>`) matches a test registered in BUILD (the fuzz.* tests of the sanitizer build:
registered in tests/*.cmake), and every registered suite is listed there.
bench: every bench script named in a code block of bench/README.md prints --help and names each
flag its examples use; bench/quant runs on fashion_cnn (1 round, 2 runs); the train_step driver
prints the JSON keys bench/train reads.
Exit status 0 when everything holds, 1 with one line per broken promise.
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

COMMANDS = ("info", "export", "run", "grad", "swap-head", "freeze", "train", "eval", "predict")
FLAG_RE = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
failures = []


def fail(msg):
    failures.append(msg)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def section(text, title):
    """The text of the markdown section `## title` up to the next `## `."""
    m = re.search(r"^## " + re.escape(title) + r"\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not m:
        fail(f"README.md: no section '## {title}'")
        return ""
    return m.group(1)


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# ------------------------------------------------------------------------------------- flags
def readme_command_block(readme):
    """{command: set of flags} from the first code block of README's Commands section."""
    sec = section(readme, "Commands")
    m = re.search(r"```[a-z]*\n(.*?)```", sec, re.S)
    if not m:
        fail("README.md: no code block in the Commands section")
        return {}
    flags, cmd = {}, None
    for line in m.group(1).splitlines():
        line = re.sub(r"\s+#.*$", "", line)
        mm = re.match(r"onnx-tl (\S+)", line)
        if mm:
            cmd = mm.group(1)
            flags.setdefault(cmd, set())
        elif not line.strip():
            continue
        if cmd:
            flags[cmd].update(FLAG_RE.findall(line))
    return flags


def span_flags(text, where, out):
    """Flags of backticked spans naming a command: `onnx-tl CMD ...` or `CMD --flag ...`."""
    for span in re.findall(r"`([^`\n]+)`", text):
        for m in re.finditer(r"(?:^|onnx-tl )(" + "|".join(map(re.escape, COMMANDS)) + r")((?: [^`]*)?)$", span):
            rest = re.split(r"\bonnx-tl ", m.group(2))[0]
            for f in FLAG_RE.findall(rest):
                out.setdefault(m.group(1), {}).setdefault(f, where)


def part_flags(src, tl):
    readme = read(os.path.join(src, "README.md"))
    bench = read(os.path.join(src, "bench", "README.md"))
    block = readme_command_block(readme)
    p = run([tl, "--help"])
    m = re.search(r"^commands:\n(.*?)\n\n", p.stdout, re.M | re.S)
    listed = re.findall(r"^  ([a-z][a-z-]+) ", m.group(1), re.M) if m else []
    if p.returncode != 0 or not listed:
        fail(f"onnx-tl --help: exit {p.returncode}, no command list")
    for c in listed:
        if c not in block:
            fail(f"README.md Commands block: no line for `onnx-tl {c}` (listed by onnx-tl --help)")
    for c in block:
        if c not in listed:
            fail(f"README.md Commands block: `onnx-tl {c}` is not a command of onnx-tl --help")
    want = {}
    for c, fs in block.items():
        for f in fs:
            want.setdefault(c, {})[f] = "README.md Commands block"
    span_flags(readme, "README.md", want)
    # bench/quant's `[--export-args]` stands for that script's option, placed in the export command
    span_flags(bench.replace("[--export-args]", ""), "bench/README.md", want)
    n = 0
    with tempfile.TemporaryDirectory(prefix="otl-docs-") as wd:
        for c, fs in sorted(want.items()):
            if c not in listed:
                continue
            h = run([tl, c, "--help"])
            if h.returncode != 0:
                fail(f"onnx-tl {c} --help: exit {h.returncode}")
                continue
            # the parser runs before the model is opened: a flag it does not know gets the same
            # answer as this one (whatever its wording)
            probe = lambda flag: run([tl, c, os.path.join(wd, "no_such_model.onnx"), flag], cwd=wd)
            bogus = probe("--zz-no-such-flag")
            unknown = (bogus.returncode, bogus.stderr.replace("--zz-no-such-flag", "FLAG"))
            if bogus.returncode != 2 or "FLAG" not in unknown[1]:
                fail(f"onnx-tl {c} --zz-no-such-flag: exit {bogus.returncode}, {bogus.stderr.strip()!r}")
            for f, where in sorted(fs.items()):
                n += 1
                if f in ("--help",):
                    continue
                if not re.search(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])", h.stdout):
                    fail(f"{where}: `onnx-tl {c} {f}` is documented, but `onnx-tl {c} --help` does not name {f}")
                q = probe(f)
                if (q.returncode, q.stderr.replace(f, "FLAG")) == unknown:
                    fail(f"{where}: `onnx-tl {c} {f}` is documented, but onnx-tl rejects it: {q.stderr.strip()}")
        if os.listdir(wd):
            fail(f"the flag probes wrote files: {os.listdir(wd)}")
    print(f"flags: {len(listed)} commands, {n} documented (command, flag) pairs checked")


# --------------------------------------------------------------------------------------- env
def part_env(src):
    text = read(os.path.join(src, "README.md")) + read(os.path.join(src, "bench", "README.md"))
    names = sorted(set(re.findall(r"\bOTL_[A-Z0-9_]+\b", text)))
    code = ""
    for pat in ("src/*.[ch]", "ops/*.[ch]", "graph/*.[ch]", "cli/*.[ch]", "proto/*.[ch]", "include/*.h",
                "bench/*.c"):
        for p in glob.glob(os.path.join(src, pat)):
            code += read(p)
    cmake = read(os.path.join(src, "CMakeLists.txt"))
    shell = "".join(read(p) for p in glob.glob(os.path.join(src, "tools", "*.sh")))
    scripts = "".join(read(p) for p in glob.glob(os.path.join(src, "bench", "*"))
                      if os.path.isfile(p) and not p.endswith((".c", ".h", ".md", ".js")))
    for v in names:
        # C: getenv("V") or a switch helper such as graph/fuse.c's env_on("V"); bench/ scripts: os.environ
        if (re.search(r'\b(getenv|env_on)\("' + v + '"\)', code) or re.search(r"option\(\s*" + v + r"\b", cmake)
                or re.search(r"\$\{?" + v + r"\b", shell) or re.search(r"os\.environ(\.get\(|\[)\"" + v + '"', scripts)):
            continue
        fail(f"README.md / bench/README.md document {v}, but no getenv(\"{v}\") / env_on(\"{v}\"), CMake option(), "
             f"tools/*.sh variable or bench/ script's os.environ reads it")
    print(f"env: {len(names)} documented OTL_* variables checked")


# ------------------------------------------------------------------------------------- tests
def part_tests(src, ctest, build):
    p = run([ctest, "-N"], cwd=build)
    registered = re.findall(r"^\s*Test\s+#\d+: (\S+)", p.stdout, re.M)
    if p.returncode != 0 or not registered:
        fail(f"ctest -N in {build}: exit {p.returncode}, {len(registered)} tests")
        return
    prefixes = {t.split(".")[0] for t in registered}
    sec = section(read(os.path.join(src, "README.md")), "Tests")
    cmake_src = "".join(read(p) for p in glob.glob(os.path.join(src, "tests", "*.cmake")))
    # fuzz.* exist only in the sanitizer build (OTL_FUZZ): registered by name or by a foreach
    fuzz = set(re.findall(r"add_test\(NAME (fuzz\.[a-z_]+)", cmake_src))
    for lst in re.findall(r"foreach\(_t ([a-z_ ]+)\)\s*\n\s*add_test\(NAME fuzz\.\$\{_t\}", cmake_src):
        fuzz.update("fuzz." + t for t in lst.split())
    bullet_names = set(re.findall(r"^- `([^`\s/]+)`", sec, re.M))
    listed_prefixes = set()
    n = 0
    for name in re.findall(r"`([a-z][a-z0-9_]*\.[^`\s/()]+)`", sec):
        prefix = name.split(".")[0]
        if prefix not in prefixes and prefix != "fuzz" and name not in bullet_names:
            continue  # e.g. `onnx.checker`: not a test name
        rx = re.compile("^" + "".join("[^ ]+" if re.fullmatch(r"<[^>]*>", x) else ".*" if x == "*" else re.escape(x)
                                      for x in re.split(r"(<[^>]*>|\*)", name)) + "$")
        pool = fuzz if prefix == "fuzz" else registered
        n += 1
        listed_prefixes.add(prefix)
        if not any(rx.match(t) for t in pool):
            fail(f"README.md Tests: `{name}` matches no registered test")
    for pf in sorted(prefixes - listed_prefixes):
        ex = sorted(t for t in registered if t.split(".")[0] == pf)
        fail(f"README.md Tests: the suite `{pf}.*` ({len(ex)} tests, e.g. {ex[0]}) is not described")
    print(f"tests: {n} test names of README.md against {len(registered)} registered tests, "
          f"{len(prefixes)} suites")


# ------------------------------------------------------------------------------------- bench
def part_bench(src, tl, train_step, node):
    text = read(os.path.join(src, "bench", "README.md"))
    want = {}
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"'[^']*'", "", re.sub(r"\s+#.*$", "", line))  # quoted: another tool's flags
            m = re.match(r"(bench/[a-z_]+)\b(.*)$", line.strip())
            if m:
                want.setdefault(m.group(1), set()).update(FLAG_RE.findall(m.group(2)))
    if not want:
        fail("bench/README.md: no bench/ command in a code block")
    for script, flags in sorted(want.items()):
        path = os.path.join(src, script)
        if not os.access(path, os.X_OK):
            fail(f"bench/README.md: {script} is not an executable file")
            continue
        h = run([path, "--help"])
        if h.returncode != 0:
            fail(f"{script} --help: exit {h.returncode}: {h.stderr.strip()[-300:]}")
            continue
        for f in sorted(flags):
            if not re.search(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])", h.stdout):
                fail(f"bench/README.md: `{script} {f}` is documented, but `{script} --help` does not name {f}")
    # bench/quant end to end on the bundled model (export, --quantize int8, ORT, its parsers)
    q = run([os.path.join(src, "bench", "quant"), "--onnx-tl", tl, "--node", node, "--models", "fashion_cnn",
             "--rounds", "1", "--reps", "2", "--calib-samples", "8", "--json"])
    try:
        res = json.loads(q.stdout)
        r = res[0]
        ok = (q.returncode == 0 and len(res) == 1 and r["model"] == "fashion_cnn" and r["int8_ms_median"] > 0
              and r["float_ms_median"] > 0 and 0 < r["int8_bytes"] < 0.5 * r["float_bytes"]
              and r["ort_int8_kernels"].get("QLinearConv", 0) >= 2)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        ok, r = False, repr(e)
    if not ok:
        fail(f"bench/quant --models fashion_cnn --rounds 1 --reps 2: exit {q.returncode}, result {r!r}, "
             f"stderr {q.stderr.strip()[-500:]!r}")
    # the train_step driver of bench/train: the JSON keys bench/train reads
    model = os.path.join(src, "testdata", "models", "tiny_resnet.onnx")
    for extra in ([], ["--head-only"]):
        t = run([train_step, model, "--batch", "4", "--threads", "2", "--steps", "2", "--warmup", "1", "--json"]
                + extra)
        try:
            o = json.loads(t.stdout.strip().splitlines()[-1])
            missing = [k for k in ("median_ms", "img_s", "cpu_ms_per_step", "peak_rss_kb", "loss_first",
                                   "loss_last") if k not in o]
        except (ValueError, IndexError) as e:
            o, missing = None, [repr(e)]
        if t.returncode != 0 or missing:
            fail(f"train_step {' '.join(extra)}: exit {t.returncode}, missing {missing}: {t.stderr.strip()[-300:]}")
    print(f"bench: {len(want)} scripts, {sum(map(len, want.values()))} documented flags; bench/quant and "
          f"train_step ran")


def main():
    a = sys.argv[1:]
    parts = {"flags": (part_flags, 2), "env": (part_env, 1), "tests": (part_tests, 3), "bench": (part_bench, 4)}
    if not a or a[0] not in parts or len(a) - 1 != parts[a[0]][1]:
        sys.stderr.write(__doc__)
        return 2
    parts[a[0]][0](*a[1:])
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
