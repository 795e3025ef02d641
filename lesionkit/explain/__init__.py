"""Explanations of trained models: CAMs (cam.py), target layers, attention statistics on masks (stats.py), occlusion test, pictures, and the `lesionkit gradcam` stage (run.py)."""
