import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CollectiveError,
  encodeFrame,
  encodeHeader,
  FRAME_HEADER_BYTES,
  FrameReader,
  FrameType,
  FramedSocket,
} from '../../collectives';

const floats = (...values: number[]): Float32Array => Float32Array.from(values);
const bytes = (array: Float32Array): Buffer => Buffer.from(array.buffer, array.byteOffset, array.byteLength);

/** Feed `stream` to the reader in pieces of `size` bytes (socket reads end anywhere). */
function feed(reader: FrameReader, stream: Buffer, size: number): void {
  for (let pos = 0; pos < stream.length; pos += size) reader.push(stream.subarray(pos, pos + size));
}

describe('FrameReader', () => {
  it('reassembles frames from reads split anywhere, into the receive that asked for each', async () => {
    const a = floats(1.5, -2, 3.25, 4, 5, 6, 7);
    const b = floats(10, 20, 30, 40, 50, 60, 70);
    const stream = Buffer.concat([
      encodeFrame(FrameType.AllReduce, 7, bytes(a)),
      encodeFrame(FrameType.AllReduce, 7, bytes(b)),
      encodeFrame(FrameType.Barrier, 8),
    ]);
    for (const size of [1, 3, 5, 17, stream.length]) {
      const reader = new FrameReader({ peer: 'rank 1' });
      const copy = new Float32Array(7);
      const sum = floats(1, 1, 1, 1, 1, 1, 1);
      const received = Promise.all([
        reader.receive({ type: FrameType.AllReduce, tag: 7, what: 'a', into: new Uint8Array(copy.buffer) }),
        reader.receive({ type: FrameType.AllReduce, tag: 7, what: 'b', addInto: sum }),
        reader.receive({ type: FrameType.Barrier, tag: 8, what: 'c', byteLength: 0 }),
      ]);
      feed(reader, stream, size);
      await received;
      expect(copy).toEqual(a);
      expect(sum).toEqual(floats(11, 21, 31, 41, 51, 61, 71));
    }
  });

  it('with direct reads, lands every read exactly in place, whatever size the reads are', async () => {
    // What a socket with Node's `onread` does: ask for a buffer, read up to its length into it.
    const a = Float32Array.from({ length: 1001 }, (_, i) => i / 7);
    const b = Float32Array.from({ length: 1001 }, (_, i) => -i);
    const stream = Buffer.concat([
      encodeFrame(FrameType.AllReduce, 2, bytes(a)),
      encodeFrame(FrameType.AllReduce, 2, bytes(b)),
      encodeFrame(FrameType.Reduce, 3, bytes(a)),
    ]);
    for (const maxRead of [1, 3, 6, 4099, 1 << 20]) {
      const reader = new FrameReader({ peer: 'rank 1' });
      const copy = new Float32Array(1001);
      const sum = new Float32Array(1001).fill(0.5);
      const mean = new Float32Array(1001).fill(1);
      const received = Promise.all([
        reader.receive({ type: FrameType.AllReduce, tag: 2, what: 'copy', into: new Uint8Array(copy.buffer) }),
        reader.receive({ type: FrameType.AllReduce, tag: 2, what: 'sum', addInto: sum }),
        reader.receive({ type: FrameType.Reduce, tag: 3, what: 'mean', addInto: mean, scale: 0.5 }),
      ]);
      let pos = 0;
      for (let turn = 0; pos < stream.length; turn++) {
        const target = reader.nextReadBuffer();
        const n = Math.min(target.length, stream.length - pos, 1 + ((turn * 7919) % maxRead));
        target.set(stream.subarray(pos, pos + n));
        reader.commitRead(n);
        pos += n;
      }
      await received;
      expect(bytes(copy).equals(bytes(a))).toBe(true);
      expect(bytes(sum).equals(bytes(b.map((x) => x + 0.5)))).toBe(true);
      expect(bytes(mean).equals(bytes(a.map((x) => (x + 1) * 0.5)))).toBe(true);
    }
  });

  it('keeps frames that arrive before they are asked for', async () => {
    const reader = new FrameReader({ peer: 'rank 1' });
    feed(
      reader,
      Buffer.concat([
        encodeFrame(FrameType.Broadcast, 1, bytes(floats(1, 2))),
        encodeFrame(FrameType.Broadcast, 1, bytes(floats(3, 4))),
      ]),
      3,
    );
    expect(reader.queuedFrames).toBe(2);
    const first = new Float32Array(2);
    const second = floats(1, 1);
    await reader.receive({ type: FrameType.Broadcast, tag: 1, what: 'first', into: new Uint8Array(first.buffer) });
    await reader.receive({ type: FrameType.Broadcast, tag: 1, what: 'second', addInto: second });
    expect(first).toEqual(floats(1, 2));
    expect(second).toEqual(floats(4, 5));
  });

  it('refuses a frame larger than the limit, bad magic, another version', async () => {
    const oversize = new FrameReader({ peer: 'rank 2', maxPayloadBytes: 1024 });
    const pending = oversize.receive({ type: FrameType.AllReduce, tag: 1, what: 'allReduce #1' });
    oversize.push(encodeHeader(FrameType.AllReduce, 1, 1 << 30));
    await expect(pending).rejects.toThrow(
      'bad frame from rank 2: allReduce frame declares 1073741824 payload bytes, more than the 1024-byte limit',
    );

    const garbage = new FrameReader({ peer: 'rank 2' });
    garbage.push(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(garbage.failed?.message).toMatch(/^bad frame from rank 2: magic 0x47455420 is not 0x47414e54/);

    const future = encodeHeader(FrameType.Barrier, 1, 0);
    future.writeUInt8(9, 4);
    const versioned = new FrameReader({ peer: 'rank 2' });
    versioned.push(future);
    expect(versioned.failed?.message).toBe('bad frame from rank 2: wire version 9, this rank speaks version 1');
  });

  it('reports a frame cut off by the end of the connection as truncated', async () => {
    const reader = new FrameReader({ peer: 'rank 1' });
    const pending = reader.receive({ type: FrameType.AllReduce, tag: 3, what: 'allReduce #3', byteLength: 4194304 });
    reader.push(encodeHeader(FrameType.AllReduce, 3, 4194304));
    reader.push(Buffer.alloc(1000));
    reader.end();
    await expect(pending).rejects.toThrow(
      'truncated frame from rank 1: expected 4194304 payload bytes, got 1000 before the connection closed',
    );

    const half = new FrameReader({ peer: 'rank 1' });
    half.push(encodeHeader(FrameType.AllReduce, 3, 8).subarray(0, 5));
    half.end();
    expect(half.failed?.message).toBe(
      `truncated frame from rank 1: expected a ${FRAME_HEADER_BYTES}-byte header, ` +
        'got 5 bytes before the connection closed',
    );
  });

  it('rejects a frame of another operation, type or length as a protocol error', async () => {
    const wrongTag = new FrameReader({ peer: 'rank 1' });
    const a = wrongTag.receive({ type: FrameType.AllReduce, tag: 4, what: 'allReduce #4' });
    wrongTag.push(encodeFrame(FrameType.AllReduce, 5, Buffer.alloc(8)));
    await expect(a).rejects.toThrow(
      'protocol error from rank 1: got a allReduce frame of operation #5 while waiting for allReduce #4',
    );

    const wrongType = new FrameReader({ peer: 'rank 1' });
    wrongType.push(encodeFrame(FrameType.Broadcast, 4, Buffer.alloc(8)));
    await expect(wrongType.receive({ type: FrameType.AllReduce, tag: 4, what: 'allReduce #4' })).rejects.toThrow(
      'got a broadcast frame of operation #4',
    );

    const wrongLength = new FrameReader({ peer: 'rank 1' });
    const c = wrongLength.receive({
      type: FrameType.AllReduce,
      tag: 4,
      what: 'allReduce #4',
      into: new Uint8Array(12),
    });
    wrongLength.push(encodeFrame(FrameType.AllReduce, 4, Buffer.alloc(8)));
    await expect(c).rejects.toThrow('allReduce #4 frame has 8 payload bytes where allReduce #4 needs 12');
  });

  it('times out a receive, naming the peer and what was awaited, and fails everything after it', async () => {
    const reader = new FrameReader({ peer: 'rank 3', timeoutMs: 50 });
    const started = Date.now();
    const pending = reader.receive({ type: FrameType.Barrier, tag: 2, what: 'barrier #2 (round 1 of 3)' });
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CollectiveError);
    expect((error as CollectiveError).code).toBe('timeout');
    expect((error as CollectiveError).message).toBe(
      'timed out after 50 ms waiting for rank 3 to send barrier #2 (round 1 of 3)',
    );
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(reader.receive({ type: FrameType.Barrier, tag: 3, what: 'barrier #3' })).rejects.toThrow(
      'timed out after 50 ms',
    );
  });

  it("turns a peer's Abort frame into a failure carrying its reason", async () => {
    const reader = new FrameReader({ peer: 'rank 0' });
    const pending = reader.receive({ type: FrameType.AllReduce, tag: 1, what: 'allReduce #1' });
    reader.push(encodeFrame(FrameType.Abort, 0, Buffer.from('out of memory')));
    await expect(pending).rejects.toMatchObject({
      code: 'aborted',
      reason: 'out of memory',
      message: 'rank 0 aborted: out of memory (while waiting for allReduce #1)',
    });
  });
});

describe('FramedSocket', () => {
  const sockets: net.Socket[] = [];
  const servers: net.Server[] = [];
  afterEach(() => {
    for (const socket of sockets.splice(0)) socket.destroy();
    for (const server of servers.splice(0)) server.close();
  });

  /** [rank 0's end, rank 1's end] of one loopback connection. */
  async function socketPair(): Promise<[FramedSocket, FramedSocket]> {
    const server = net.createServer();
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = net.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
    const serverSide = await accepted;
    sockets.push(client, serverSide);
    return [new FramedSocket(client, { peer: 'rank 1' }), new FramedSocket(serverSide, { peer: 'rank 0' })];
  }

  it('sends Float32Array payloads without copying and receives them into place', async () => {
    const [a, b] = await socketPair();
    const big = new Float32Array(1_000_003).map((_, i) => i * 0.5);
    const target = new Float32Array(big.length);
    const done = b.receive({
      type: FrameType.Broadcast,
      tag: 9,
      what: 'broadcast #9',
      into: new Uint8Array(target.buffer),
    });
    a.send(FrameType.Broadcast, 9, big);
    await a.flush(2000, 'broadcast #9');
    await done;
    expect(bytes(target).equals(bytes(big))).toBe(true); // (toEqual walks a million elements slowly)
  });

  it('rejects every pending receive at once when the peer disconnects', async () => {
    const [a, b] = await socketPair();
    const started = Date.now();
    const first = b.receive({
      type: FrameType.AllReduce,
      tag: 1,
      what: 'allReduce #1 (step 1 of 2)',
      timeoutMs: 10_000,
    });
    const second = b.receive({
      type: FrameType.AllReduce,
      tag: 1,
      what: 'allReduce #1 (step 2 of 2)',
      timeoutMs: 10_000,
    });
    a.destroy();
    await Promise.all([
      expect(first).rejects.toThrow('rank 0 closed the connection (while waiting for allReduce #1 (step 1 of 2))'),
      expect(second).rejects.toThrow('rank 0 closed the connection (while waiting for allReduce #1 (step 2 of 2))'),
    ]);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('reports a truncated frame from a peer that closes mid-payload', async () => {
    const [a, b] = await socketPair();
    const pending = b.receive({ type: FrameType.AllReduce, tag: 1, what: 'allReduce #1', byteLength: 1 << 20 });
    a.socket.write(encodeHeader(FrameType.AllReduce, 1, 1 << 20));
    a.socket.end(Buffer.alloc(1000));
    await expect(pending).rejects.toThrow(
      'truncated frame from rank 0: expected 1048576 payload bytes, got 1000 before the connection closed ' +
        '(while waiting for allReduce #1)',
    );
  });
});
