"""``import perception`` stays light: the classic localization path never loads torch.

Run in a fresh interpreter: this test process has usually imported torch already.
"""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import perception
from perception import Localizer, LocalizerConfig, BlockageDetector, generate_scenario
heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'kernels', 'triton')))
print(','.join(heavy) or 'none')
"""

LAZY = """
import sys
import perception
assert 'torch' not in sys.modules
from perception import FusionConfig, FusionEncoder
import perception.fusion as fusion
assert FusionEncoder is fusion.FusionEncoder and perception.FusionConfig is fusion.FusionConfig
assert 'torch' in sys.modules and 'FusionEncoder' in dir(perception)
try:
    perception.no_such_name
except AttributeError as e:
    print(e)
"""


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_perception__import_does_not_load_torch():
    assert _python(CHECK) == "none"


def test_perception__fusion_names_load_on_first_access():
    assert _python(LAZY) == "module 'perception' has no attribute 'no_such_name'"
