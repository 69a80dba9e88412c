# Computed the 2d objective terms in reference_2d_terms.json with the code of commit 396ef71 (before the view axis).
import json, sys
import numpy as np, torch
sys.path.insert(0, "tests")
from test_objectives import tiny_config
from videomdm.data.dataset import MotionWindows
from videomdm.factory import build_diffusion
from videomdm.objectives import build_objective
from videomdm.train import ItemRandom
torch.set_num_threads(1)

class Shrink(torch.nn.Module):
    def forward(self, x, t, mask, cond=None, uncond=None):
        return 0.8 * x + 0.05

out = {}
for weighting in ("depth_squared", "mean_depth"):
    config = tiny_config("train.supervision=2d", "two_d.alignment=0.5", f"two_d.depth_weighting={weighting}",
                         "two_d.time_weighting=x0")  # the reference was computed with the x0 level weights
    objective = build_objective(config, None, torch.device("cpu"))
    windows = MotionWindows("tests/data/legacy_v1_dataset", "train", motion_field="teacher_3d", num_frames=16,
                            min_frames=10, with_keypoints=True)
    batch = windows.batch([0, 0, 0], np.random.default_rng(0))
    normalizer = windows.normalizer()
    loss, terms = objective(Shrink(), build_diffusion(config), normalizer, batch, ItemRandom(0, 0, range(3), max_frames=16))
    out[weighting] = {k: float(v) for k, v in terms.items()} | {"loss": float(loss)}
print(out)
json.dump(out, open("tests/data/legacy_v1_dataset/reference_2d_terms.json", "w"), indent=1)
