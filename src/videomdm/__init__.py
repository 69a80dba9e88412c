"""videomdm: a 3D human motion diffusion prior trained from 2D keypoints with a noisy 3D teacher."""

__version__ = "0.1.0"
