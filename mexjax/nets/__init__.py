"""Multi-exit backbones (SDN-style VGG16-BN, ResNet56, MobileNet v1; ResNet-18 and half-AlexNet students)
with per-exit stage functions, fake quantization, checkpoints, and the captioners.

Public API:
Building
  build(arch, *, num_classes, num_exits, width=1.0, input_shape=(32, 32, 3)) -> MultiExitNet
  MultiExitNet          spec + pure functions over variables: init, apply, logits, stage(i), features,
                        runner(tile) -> exits.ExitRunner, check_inputs
  NetSpec / Unit        the architecture as plain, hashable data: backbone units, IC positions, heads
  from_spec(spec) -> MultiExitNet;  spec_to_dict / spec_from_dict   a spec as JSON-able data and back
  ARCHS / STUDENT_ARCHS / ALL_ARCHS   victims' backbones (vgg16, resnet56, mobilenet); students'; both
  MIN_EXITS / MAX_EXITS               exits a net may have (1 = a plain single-exit network; 7)
  exit_flops(net) -> list[int]        cumulative FLOPs of reaching and evaluating each exit
Quantization (int-b simulated in float, straight-through gradients)
  quantize(net, weight_bits=8, activation_bits=8) -> MultiExitNet   the fake-quantized copy
  calibrate(qnet, variables, images) -> variables   observe activation ranges (PTQ = quantize + calibrate)
  fake_quant(x, lo, hi, bits) / fake_quant_weights(w, bits)   the quantize-dequantize primitives
  quantize_params(params, bits)       every kernel leaf fake-quantized
Saving
  save(directory, net, variables, thresholds=None, info=None)   one Orbax checkpoint + file checksums
  load(directory, *, require_checksums=False) -> (net, variables, thresholds or None, info)
                                      every file's sha256 checked against the list written at save
  transfer_backbone(source, target) -> (variables, copied)   warm-start a student from a trained backbone
Captioners
  build_captioner(encoder, decoder, *, vocab_size, bos, eos) -> Captioner   CNN encoder + LSTM / RNN decoder
  Captioner / CaptionerSpec           pure functions (teacher_forced, free_running, greedy); its plain data
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
