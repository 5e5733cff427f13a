// Just enough ONNX to benchmark onnxruntime-web on one op: a ModelProto with a single node, float32 inputs of
// fixed shapes, written with a minimal protobuf encoder (varints and length-delimited fields only).

const varint = (n: number): number[] => {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
};
const field = (id: number, value: number | string | number[]): number[] => {
  if (typeof value === "number") return [...varint(id << 3), ...varint(value)];
  const bytes = typeof value === "string" ? [...new TextEncoder().encode(value)] : value;
  return [...varint((id << 3) | 2), ...varint(bytes.length), ...bytes];
};

/** ValueInfoProto of a float tensor: name, TypeProto.tensor_type { elem_type FLOAT, shape { dim { dim_value } } }. */
const valueInfo = (name: string, shape: readonly number[]) =>
  [...field(1, name), ...field(2, field(1, [...field(1, 1), ...field(2, shape.flatMap((d) => field(1, field(1, d))))]))];

/** A model computing `outputs = op(inputs)` at opset 13. */
export function singleOpModel(op: string, inputs: Record<string, readonly number[]>, outputs: Record<string, readonly number[]>): Uint8Array {
  const node = [...Object.keys(inputs).flatMap((n) => field(1, n)), ...Object.keys(outputs).flatMap((n) => field(2, n)), ...field(4, op)];
  const graph = [
    ...field(1, node),
    ...field(2, "bench"),
    ...Object.entries(inputs).flatMap(([n, s]) => field(11, valueInfo(n, s))),
    ...Object.entries(outputs).flatMap(([n, s]) => field(12, valueInfo(n, s))),
  ];
  return Uint8Array.from([...field(1, 8), ...field(7, graph), ...field(8, [...field(1, ""), ...field(2, 13)])]);
}
