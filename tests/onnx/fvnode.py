"""The ONNX Runtime node harness of tests/onnx, set up for a test or a benchmark.

Used by tests/integration/onnx_export.py and tests/bench/bench_predict.py (each puts this
folder on sys.path). The harness lives outside the source tree, so the tree stays clean:
in $FV_NODE_DIR when set (tests/run.sh points every build at one directory, so ONNX
Runtime is downloaded once), else in BUILD/onnx-node. `npm ci` runs when
node_modules/onnxruntime-node is missing or when the package files changed; a change to
the scripts alone (score.js, inputs.js) only copies them.
"""
import os
import shutil
import subprocess

ONNX_SRC = os.path.dirname(os.path.abspath(__file__))
# Copied into the harness directory; a change to the first three means `npm ci` again.
PACKAGE_FILES = ("package.json", "package-lock.json", ".npmrc")
SCRIPTS = ("score.js", "inputs.js")


def node_dir(fedvault, die):
    """The harness directory, ready to run (node_modules/onnxruntime-node installed).

    fedvault: the fedvault binary, BUILD/cli/fedvault, which names BUILD when
    $FV_BUILD_ROOT is not set. die(msg): called when npm is missing or fails; it must not
    return (fvtest.fail, or sys.exit with the caller's prefix)."""
    build = os.environ.get("FV_BUILD_ROOT") or os.path.dirname(os.path.dirname(
        os.path.abspath(fedvault)))
    d = os.environ.get("FV_NODE_DIR") or os.path.join(build, "onnx-node")
    os.makedirs(d, exist_ok=True)
    fresh = False
    for name in PACKAGE_FILES + SCRIPTS:
        with open(os.path.join(ONNX_SRC, name), "rb") as f:
            data = f.read()
        dst = os.path.join(d, name)
        old = None
        if os.path.exists(dst):
            with open(dst, "rb") as f:
                old = f.read()
        if old != data:
            with open(dst, "wb") as f:
                f.write(data)
            fresh = fresh or name in PACKAGE_FILES
    binding = os.path.join(d, "node_modules", "onnxruntime-node", "package.json")
    if fresh or not os.path.exists(binding):
        npm = shutil.which("npm")
        if npm is None:
            die("npm not found: install Debian's nodejs and npm (.ci/install-deps)")
        # .npmrc already says so; the environment too, for an npm that skips project
        # config: onnxruntime-node's install script must not fetch GPU binaries.
        env = dict(os.environ, ONNXRUNTIME_NODE_INSTALL_CUDA="skip",
                   ONNXRUNTIME_NODE_INSTALL="skip")
        p = subprocess.run([npm, "ci", "--prefix", d, "--no-audit", "--no-fund"],
                           capture_output=True, text=True, timeout=900, env=env)
        if p.returncode != 0:
            die(f"npm ci --prefix {d}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return d
