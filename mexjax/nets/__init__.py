"""Multi-exit backbones (SDN-style VGG16-BN, ResNet56, MobileNet v1) with per-exit stage functions.

build(arch, *, num_classes, num_exits, width=1.0, input_shape=(32, 32, 3)) -> MultiExitNet
exit_flops(net) -> list[int]      cumulative FLOPs of reaching and evaluating each exit
quantize(net, weight_bits=8, activation_bits=8) -> MultiExitNet   fake-quantized copy (int-b simulated)
calibrate(qnet, variables, images) -> variables   observe activation ranges (PTQ = quantize + calibrate)
fake_quant(x, lo, hi, bits), fake_quant_weights(w, bits)   the quantize-dequantize primitives (STE)
transfer_backbone(source, target) -> (variables, copied)   warm-start a student from a trained backbone
build_captioner(encoder, decoder, *, vocab_size, bos, eos) -> Captioner   CNN encoder + LSTM / RNN decoder
"""

from mexjax.nets._arch import ALL_ARCHS, ARCHS, MAX_EXITS, MIN_EXITS, STUDENT_ARCHS, NetSpec, Unit
from mexjax.nets._captioner import Captioner, CaptionerSpec, build_captioner
from mexjax.nets._io import load, save, spec_from_dict, spec_to_dict, transfer_backbone
from mexjax.nets._model import MultiExitNet, build, calibrate, from_spec, quantize
from mexjax.nets._quant import fake_quant, fake_quant_weights, quantize_params


def exit_flops(net: MultiExitNet | NetSpec) -> list[int]:
    """Cumulative FLOPs (multiply-add = 2) of reaching and evaluating each exit, per image.

    Counts convolutions and dense layers of the backbone and of every head evaluated on the way
    (a sample leaving at exit i ran ICs 0..i); batch norm, activations and pooling are not counted.
    """
    from mexjax.nets._arch import exit_flops as _exit_flops

    return _exit_flops(net.spec if isinstance(net, MultiExitNet) else net)


__all__ = [
    "ALL_ARCHS",
    "ARCHS",
    "MAX_EXITS",
    "MIN_EXITS",
    "STUDENT_ARCHS",
    "Captioner",
    "CaptionerSpec",
    "MultiExitNet",
    "NetSpec",
    "Unit",
    "build",
    "build_captioner",
    "calibrate",
    "exit_flops",
    "fake_quant",
    "fake_quant_weights",
    "from_spec",
    "load",
    "quantize",
    "quantize_params",
    "save",
    "spec_from_dict",
    "spec_to_dict",
    "transfer_backbone",
]
