import { describe, expect, it } from 'vitest';
import { readPredictRequest, writePredictResponse } from '../../serving/grpc/predict-wire';
import { loadServingProtos } from '../../serving/grpc/protos';
import { scanDensePredictBody } from '../../serving/rest/dense-json';

/**
 * The predict fast paths (REST dense JSON, binary PredictRequest/PredictResponse at the wire
 * level) must read exactly what the general path reads — the same numbers, shapes and names —
 * and decline whatever they do not fully understand, so the general path answers it.
 */

/** A deterministic stream of doubles of many magnitudes and digit counts. */
function* numbers(count: number): Generator<number> {
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < count; i++) {
    const magnitude = 10 ** Math.floor(next() * 40 - 20);
    const value = (next() - 0.5) * magnitude;
    yield i % 3 === 0 ? Math.round(value * 1000) : Number(value.toPrecision(1 + Math.floor(next() * 17)));
  }
}

describe('REST dense JSON fast path', () => {
  it('reads the same float32 values and shape as JSON.parse, for every kind of number', () => {
    const values = [
      ...numbers(20_000),
      0,
      -0,
      1e-30,
      3.4028235677973362e38, // just under the value that rounds to Infinity (refused since float32 overflow is)
      5e-324,
      2.2250738585072014e-308, // (double max overflows float32: refused, so not here)
      9007199254740993,
      0.30000000000000004,
      255,
      1e3,
    ];
    const text = JSON.stringify({ instances: values.map((v) => [v]) }).replace('1000]', '1e3]');
    const body = scanDensePredictBody(Buffer.from(text));
    expect(body).toBeDefined();
    expect(body!.format).toBe('row');
    expect(body!.dims).toEqual([values.length, 1]);
    const want = Float32Array.from((JSON.parse(text).instances as number[][]).map((row) => row[0]!));
    expect(Array.from(body!.data).map((v, i) => Object.is(v, want[i]))).not.toContain(false);
  });

  it('reads nested rows, the columnar form, whitespace and signature_name', () => {
    const body = scanDensePredictBody(
      Buffer.from(' { "signature_name" : "serving_default", "inputs" : [ [ [1, 2], [3, 4] ], [[5, 6], [7, 8.5]] ] } '),
    );
    expect(body).toEqual({
      format: 'columnar',
      signatureName: 'serving_default',
      dims: [2, 2, 2],
      data: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8.5]),
    });
  });

  it('declines what the general path must answer', () => {
    const declined = [
      '{"instances": [[1,2],[3]]}', // ragged
      '{"instances": []}',
      '{"instances": [[]]}',
      '{"instances": [1, 2', // malformed
      '{"instances": [01]}',
      '{"instances": [1.]}',
      '{"instances": [.5]}',
      '{"instances": [+1]}',
      '{"instances": [1e999]}', // Infinity: the decoder names it
      '{"instances": [1], "extra": 1}',
      '{"instances": [1], "instances": [2]}',
      '{"instances": [1], "inputs": [2]}',
      '{"instances": [1]} x',
      '{"instances": [{"b64": "AAAA"}]}',
      '{"instances": [{"input": [1]}]}',
      '{"instances": ["7"]}',
      '{"instances": [true]}',
      '{"instances": [1], "signature_name": "caf\\u00e9"}',
      '{"signature_name": "x"}',
      '[1, 2]',
    ];
    for (const text of declined) expect(scanDensePredictBody(Buffer.from(text)), text).toBeUndefined();
  });
});

describe('binary PredictRequest / PredictResponse fast path', () => {
  const protos = loadServingProtos();

  it('reads what proto-loader reads: model spec, inputs (tensor_content or float_val), output filter', () => {
    const values = Float32Array.from([...numbers(24)]);
    const cases = [
      {
        model_spec: { name: 'm', version: { value: '7' }, signature_name: 'serving_default' },
        inputs: {
          input: {
            dtype: 'DT_FLOAT',
            tensor_shape: { dim: [4, 2, 3].map((size) => ({ size: String(size) })) },
            tensor_content: Buffer.from(values.buffer),
          },
        },
      },
      {
        model_spec: { name: 'm', version_label: 'canary' },
        inputs: {
          input: {
            dtype: 'DT_FLOAT',
            tensor_shape: { dim: [{ size: '4', name: 'batch' }, { size: '6' }] },
            float_val: Array.from(values),
          },
        },
        output_filter: ['probabilities'],
      },
      {
        model_spec: { name: 'm' },
        inputs: {
          a: {
            dtype: 'DT_INT32',
            tensor_shape: { dim: [{ size: '1' }, { size: '2' }] },
            tensor_content: Buffer.from(Int32Array.from([5, -6]).buffer),
          },
        },
      },
    ];
    for (const request of cases) {
      const bytes = protos.encodePredictRequest(request);
      const wire = readPredictRequest(bytes)!;
      const general = protos.decodePredictRequest(bytes) as {
        model_spec: {
          name: string;
          version_choice?: string;
          version?: { value: string };
          version_label: string;
          signature_name: string;
        };
        inputs: Record<
          string,
          { dtype: string; tensor_shape: { dim: { size: string }[] }; tensor_content: Buffer; float_val: number[] }
        >;
        output_filter: string[];
      };
      expect(wire).toBeDefined();
      expect(wire.name).toBe(general.model_spec.name);
      expect(wire.version).toBe(
        general.model_spec.version_choice === 'version' ? Number(general.model_spec.version!.value) : undefined,
      );
      expect(wire.versionLabel).toBe(
        general.model_spec.version_choice === 'version_label' ? general.model_spec.version_label : undefined,
      );
      expect(wire.signatureName).toBe(general.model_spec.signature_name);
      expect(wire.outputFilter).toEqual(general.output_filter);
      expect([...wire.inputs.keys()]).toEqual(Object.keys(general.inputs));
      for (const [key, tensor] of wire.inputs) {
        const want = general.inputs[key]!;
        expect(tensor.dtype).toBe(want.dtype === 'DT_FLOAT' ? 1 : 3);
        expect(tensor.dims).toEqual(want.tensor_shape.dim.map((d) => Number(d.size)));
        if (want.tensor_content.length) expect(Buffer.from(tensor.content!)).toEqual(want.tensor_content);
        else expect(Array.from(tensor.floats!)).toEqual(want.float_val);
      }
    }
  });

  it('declines fields and values it does not take', () => {
    const declined = [
      {
        model_spec: { name: 'x' },
        inputs: { input: { dtype: 'DT_DOUBLE', tensor_shape: { dim: [{ size: '1' }] }, double_val: [1] } },
      },
      {
        model_spec: { name: 'x' },
        inputs: { input: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '-1' }] }, float_val: [1] } },
      },
      {
        model_spec: { name: 'x' },
        inputs: { ünï: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '1' }] }, float_val: [1] } },
      },
      {
        model_spec: { name: 'x' },
        inputs: { s: { dtype: 'DT_STRING', tensor_shape: { dim: [{ size: '1' }] }, string_val: [Buffer.from('a')] } },
      },
    ];
    for (const request of declined)
      expect(readPredictRequest(protos.encodePredictRequest(request)), JSON.stringify(request)).toBeUndefined();
    expect(readPredictRequest(Buffer.from([0x0a, 0xff]))).toBeUndefined();
  });

  it('writes a PredictResponse that proto-loader reads back as the general encoder wrote it', () => {
    const data = Float32Array.from([...numbers(30)].map((v) => Math.fround(v)));
    const bytes = writePredictResponse('fashion', 12, 'serving_default', [
      { key: 'probabilities', tensor: { dtype: 'float32', shape: [3, 10], data } },
    ])!;
    const general = protos.encodePredictResponse({
      model_spec: { name: 'fashion', version: { value: '12' }, signature_name: 'serving_default' },
      outputs: {
        probabilities: {
          dtype: 'DT_FLOAT',
          tensor_shape: { dim: [{ size: '3' }, { size: '10' }] },
          float_val: Array.from(data),
        },
      },
    });
    expect(protos.decodePredictResponse(bytes)).toEqual(protos.decodePredictResponse(general));
    expect(
      writePredictResponse('m', 1, undefined, [
        { key: 'k', tensor: { dtype: 'int32', shape: [1], data: Int32Array.from([1]) } },
      ]),
    ).toBeUndefined();
  });
});
