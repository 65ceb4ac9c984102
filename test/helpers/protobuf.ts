/** Protobuf wire-format encoders for tests that build SCIP indexes by hand. */
export const varint = (value: number): number[] => {
  const out: number[] = [];
  while (value >= 128) {
    out.push((value % 128) | 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
};
/** A length-delimited field (wire type 2). */
export const bytesField = (number: number, payload: number[]): number[] => [...varint(number * 8 + 2), ...varint(payload.length), ...payload];
export const text = (number: number, value: string): number[] => bytesField(number, [...Buffer.from(value)]);
/** A varint field (wire type 0). */
export const varintField = (number: number, value: number): number[] => [...varint(number * 8), ...varint(value)];
