"""SRResNet x4 prediction throughput: predict.py's paths vs a naive eager fp32 loop.

Same weights, same inputs (the real GNR638 LR frames, repeated). Naive: one
image at a time, fp32, NCHW, BatchNorm as trained. predict.py's path: BatchNorm
folded, channels-last, batched, bf16/fp16 autocast on CUDA, converted to uint8
on the device. Prints HR
megapixels/s of both, the ratio, the largest output difference, the share of
values within 1 grey level and the PSNR of both against the HR frames. Where
onnxruntime is installed, also predict.py --backend onnxruntime (the same folded
model exported to ONNX, run in ONNX Runtime, same batches); where the CPU has
bf16 instructions (avx512_bf16 / AMX), also the CPU bf16 autocast path.

    python benchmarks/bench_predict.py                       # CPU, 2 frames
    python benchmarks/bench_predict.py --frames 32 --device cuda --weights logs/run
"""
import argparse
import importlib.util

import numpy as np
import torch

from common import machine, sample_dir, timed
from srx4.models.weights import load_model
from srx4.image.codec import list_images, read_image, to_tensor, to_uint8_batch
from srx4.core.system import cpu_has_bf16
from srx4.predict.inference import prepare_model, super_resolve
from srx4.image.metrics import psnr
from srx4.models import SRResNet


def seeded_model():
    """SRResNet-16 with non-trivial weights and BatchNorm statistics (no training needed)."""
    torch.manual_seed(0)
    model = SRResNet(4, 16, 64, bicubic_residual=True)
    for p in model.tail.parameters():
        p.data.normal_(0, 1e-3)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(4, 3, 24, 24))
    return model.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="", help="trained weights (default: a seeded SRResNet-16)")
    parser.add_argument("--samples", default="", help="folder with lr/ and hr/ (default: ../shared GNR638)")
    parser.add_argument("--frames", type=int, default=2, help="frames to predict (the samples repeated)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    device = torch.device(args.device)
    model = load_model(args.weights)[0] if args.weights else seeded_model()
    model = model.to(device).eval()
    folder = sample_dir(args.samples)
    lr_paths = list_images(folder / "lr")
    lr_paths = [lr_paths[i % len(lr_paths)] for i in range(args.frames)]
    lrs = [to_tensor(read_image(p)) for p in lr_paths]                      # (3, H, W) each
    hrs = [to_tensor(read_image(folder / "hr" / p.name)) for p in lr_paths]
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    @torch.inference_mode()
    def naive():
        return [model(x[None].to(device))[0].clamp(0, 1).cpu() for x in lrs]

    fast_model = prepare_model(model)

    def fast(runner=fast_model, amp=device.type == "cuda"):
        out = []
        for start in range(0, len(lrs), args.batch_size):
            batch = torch.stack(lrs[start:start + args.batch_size]).to(device)
            out.append(to_uint8_batch(super_resolve(runner, batch, tile=0, amp=amp)))  # uint8 (N, sH, sW, 3)
        return np.concatenate(out)

    t_naive, out_naive = timed(naive, args.repeats, sync)
    t_fast, out_fast = timed(fast, args.repeats, sync)
    others = {}
    if device.type == "cpu" and importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        import tempfile
        from srx4.predict.onnx import OnnxModel, export_onnx
        with tempfile.TemporaryDirectory() as folder:
            export_onnx(prepare_model(model, channels_last=False), {"name": "srresnet", "scale": 4}, f"{folder}/m.onnx")
            onnx_model = OnnxModel(f"{folder}/m.onnx")
            others["predict.py --backend onnxruntime"] = timed(lambda: fast(onnx_model), args.repeats, sync)
    if device.type == "cpu" and cpu_has_bf16():
        others["CPU bf16 autocast"] = timed(lambda: fast(fast_model, amp=True), args.repeats, sync)
    hr_mpix = sum(x.shape[1] * x.shape[2] for x in hrs) / 1e6
    q_naive = torch.stack([o.mul(255).round() for o in out_naive])
    psnr_naive = np.mean([psnr(q_naive[i] / 255, hrs[i]).item() for i in range(len(hrs))])
    print(f"machine: {machine()}; device {device}; {len(lrs)} frames "
          f"{lrs[0].shape[2]}x{lrs[0].shape[1]} -> x4; weights {args.weights or 'seeded SRResNet-16'}; "
          f"CPU bf16 instructions: {cpu_has_bf16()}")
    print(f"{'naive eager fp32 per image':34}: {hr_mpix / t_naive:8.2f} HR MP/s ({t_naive:.2f}s)")
    for label, (seconds, out) in {"predict.py path (torch)": (t_fast, out_fast), **others}.items():
        q = torch.from_numpy(out).permute(0, 3, 1, 2).float()
        diff = (q_naive - q).abs()
        psnr_q = np.mean([psnr(q[i] / 255, hrs[i]).item() for i in range(len(hrs))])
        print(f"{label:34}: {hr_mpix / seconds:8.2f} HR MP/s ({seconds:.2f}s), {t_naive / seconds:5.2f}x the naive "
              f"loop; max diff {diff.max().item():.0f} grey levels, within 1: "
              f"{(diff <= 1).float().mean().item() * 100:.3f}%, PSNR {psnr_naive:.4f} -> {psnr_q:.4f} dB "
              f"({psnr_q - psnr_naive:+.4f})")


if __name__ == "__main__":
    main()
