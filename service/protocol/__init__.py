"""The HTTP protocols: /predict (predict.py) and the Open Inference Protocol (v2.py), with their codecs."""
