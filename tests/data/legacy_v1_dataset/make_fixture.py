# Writes tests/data/legacy_v1_dataset with the clip writer of commit 3042a88 (clip format version 1, no view axis).
import sys, numpy as np
sys.path.insert(0, "tests")
from pathlib import Path
from synthetic import walk
from videomdm.data.prepare import prepare_mocap_2d
from videomdm.teacher import make_teacher
from conftest import make_motion_dataset
import shutil, tempfile
tmp = Path(tempfile.mkdtemp())
src = make_motion_dataset(tmp / "m", num_train=1, num_test=1, frames=24)
out = tmp / "o"
prepare_mocap_2d(src, out, teacher=make_teacher("corrupt", severity=1.0), teacher_name="corrupt", num_cameras=1, progress=False)
dst = Path("tests/data/legacy_v1_dataset")
shutil.rmtree(dst); shutil.copytree(out, dst)
