"""CLIP encoding without Django: the encoder, the safe image loader, and the tiny offline model.

encoder.py    ClipEncoder (load once per process), load_encoder_with_fallback
pipeline.py   threaded load + preprocess overlapping the forward; EncodedItem / FailedItem
images.py     the one loader for uploads, files and URLs (limits, formats, EXIF, RGB)
urls.py       URL fetching: scheme, address and redirect checks, streamed byte cap
errors.py     ImageRejected(reason_code, message, transient)
device.py     device / dtype choice (CUDA fp16, CPU fp32, optional bf16, compile)
tiny_clip.py  random CLIP checkpoints built locally (tests, offline runs, benchmarks)
"""
