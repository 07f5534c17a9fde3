import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../engine/backend';
import type { ModelServer } from '../../serving/server';
import { fashionBase, removeDir, startServer, tempDir } from './helpers';

/**
 * TLS from certificate files: REST, gRPC and the admin port answer over TLS with a certificate made
 * here by openssl (a CA, a server certificate for 127.0.0.1 it signed, a client certificate for
 * mutual TLS on the admin port); plain HTTP to a TLS port fails, and the admin port refuses a
 * client without a certificate.
 */

const TOKEN = 'tls-admin-token-0123456789';
const PROTOS = ['../../serving/protos', '../../engine/protos'].map((dir) => path.resolve(import.meta.dirname, dir));
let base: string;
let certs: string;
let server: ModelServer;
let ca: Buffer;
let clientCert: Buffer;
let clientKey: Buffer;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: certs, stdio: 'pipe' });
}

beforeAll(async () => {
  await selectBackend();
  ({ base } = await fashionBase('tls', 51));
  certs = await tempDir('tls-certs');
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=gantry test CA',
  );
  for (const [name, subject, ext] of [
    ['server', '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    ['client', '/CN=admin client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
    await writeFile(path.join(certs, `${name}.ext`), `${ext}\n`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  }
  [ca, clientCert, clientKey] = (await Promise.all(
    ['ca.pem', 'client.pem', 'client.key'].map((f) => readFile(path.join(certs, f))),
  )) as [Buffer, Buffer, Buffer];
  server = await startServer(base, {
    adminToken: TOKEN,
    grpcPort: 0,
    adminPort: 0,
    adminGrpcPort: 0,
    tlsCertFile: path.join(certs, 'server.pem'),
    tlsKeyFile: path.join(certs, 'server.key'),
    tlsClientCaFile: path.join(certs, 'ca.pem'),
  });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await Promise.all([base, certs].map(removeDir));
});

function get(
  scheme: typeof http | typeof https,
  port: number,
  urlPath: string,
  options: https.RequestOptions = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = scheme.request(
      { host: '127.0.0.1', port, path: urlPath, method: 'GET', timeout: 5000, ...options },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

describe('TLS', () => {
  it('serves REST over TLS, and plain HTTP to the TLS port fails cleanly', async () => {
    expect(server.tls).toBe(true);
    const answer = await get(https, server.restPort!, '/v1/models/fashion', { ca });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body).model_version_status[0].state).toBe('AVAILABLE');
    // Without the CA the certificate is not trusted.
    await expect(get(https, server.restPort!, '/v1/models/fashion')).rejects.toThrow(/self[- ]signed|certificate/i);
    await expect(get(http, server.restPort!, '/v1/models/fashion')).rejects.toThrow(/socket hang up|ECONNRESET/);
  });

  it('serves the admin API over mutual TLS: a client certificate signed by the CA is required', async () => {
    const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
    const answer = await get(https, server.adminPort!, '/v1/admin/state', {
      ca,
      cert: clientCert,
      key: clientKey,
      ...auth,
    });
    expect(answer.status).toBe(200);
    await expect(get(https, server.adminPort!, '/v1/admin/state', { ca, ...auth })).rejects.toThrow(
      /certificate|socket hang up|ECONNRESET|alert/i,
    );
  });

  it('serves gRPC over TLS, the admin gRPC port over mutual TLS', async () => {
    const definition = protoLoader.loadSync(['tensorflow_serving/apis/model_service.proto'], {
      includeDirs: PROTOS,
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    // biome-ignore lint/suspicious/noExplicitAny: a client generated at run time from the protos.
    const pkg = grpc.loadPackageDefinition(definition) as any;
    const status = (credentials: grpc.ChannelCredentials, address = `127.0.0.1:${server.grpcPort}`) =>
      new Promise<any>((resolve, reject) => {
        const client = new pkg.tensorflow.serving.ModelService(address, credentials);
        client.GetModelStatus(
          { model_spec: { name: 'fashion' } },
          { deadline: Date.now() + 5000 },
          (error: Error | null, response: unknown) => {
            client.close();
            error ? reject(error) : resolve(response);
          },
        );
      });
    const answer = await status(grpc.credentials.createSsl(ca));
    expect(answer.model_version_status[0].state).toBe('AVAILABLE');
    await expect(status(grpc.credentials.createInsecure())).rejects.toThrow(/UNAVAILABLE|14/);
    // The admin plane's gRPC port wants a client certificate the CA signed, as the admin REST port does.
    const admin = `127.0.0.1:${server.adminGrpcPort}`;
    const mutual = await status(grpc.credentials.createSsl(ca, clientKey, clientCert), admin);
    expect(mutual.model_version_status[0].state).toBe('AVAILABLE');
    await expect(status(grpc.credentials.createSsl(ca), admin)).rejects.toThrow(/UNAVAILABLE|14/);
  });
});
