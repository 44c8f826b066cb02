"""The vision side, part 1: photos in, aligned face crops out.

``images`` (safe decoding with pixel caps, small image operations), ``runtime`` (torch
or onnxruntime, CPU or CUDA), ``align`` (MTCNN detection, the subject rule, 5-point
similarity alignment onto the encoders' templates) and ``mtcnn_onnx`` (facenet-pytorch's
MTCNN in numpy + onnxruntime, for the light install).  No encoder and no quality model
here: those sit above (``qmag_core.encoders``, ``qmag_core.quality``).
"""
