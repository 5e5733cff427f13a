// Quantisation: narrow-float rounding, per-group integers, DeepSeek's FP8 blocks, and the quantised linear layer.
export { FORMATS, roundTo, encode, decode, roundArray, type FormatName } from "./minifloat.ts";
export { quantizeInt, dequantizeInt, packInt4, unpackInt4, type IntWeight } from "./int.ts";
export { quantizeFp8, dequantizeFp8, type Fp8Weight } from "./fp8.ts";
export { quantLinear, quantizeTokenInt8, type QuantWeight } from "./linear.ts";
