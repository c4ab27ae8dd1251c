#!/usr/bin/env node
/**
 * grpc-call: one unary gRPC call to the Sluice echo server (sluice-toolbox image), for end-to-end tests.
 *   grpc-call URL METHOD [-H name:value]... [--timeout MS]
 *   grpc-call http://echo.demo:8080 /echo.Echo/Call -H x-echo-grpc-status:5
 * Sends an empty request message over h2c (http://) or TLS (https://) and prints one JSON line: HTTP status,
 * grpc-status, grpc-message and the echo server's reply. Exit 0 when grpc-status is 0, 1 otherwise, 2 on
 * bad usage. Not a general gRPC client: it speaks only the echo server's message shape.
 */
import { parseArgs } from 'node:util';
import { grpcCall } from '../echo/echo-server.ts';

const USAGE = 'usage: grpc-call URL METHOD [-H name:value]... [--timeout MS]';

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { header: { type: 'string', short: 'H', multiple: true }, timeout: { type: 'string' } },
    });
  } catch (err) {
    process.stderr.write(`grpc-call: ${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
    return 2;
  }
  const [url, method, ...extra] = parsed.positionals;
  const timeout = parsed.values.timeout === undefined ? 10_000 : Number(parsed.values.timeout);
  if (url === undefined || method === undefined || extra.length > 0 || !/^https?:\/\//.test(url)) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  if (!method.startsWith('/') || !(Number.isInteger(timeout) && timeout > 0)) {
    process.stderr.write(`grpc-call: METHOD must start with '/' and --timeout be a positive integer\n`);
    return 2;
  }
  const headers: Record<string, string> = {};
  for (const header of parsed.values.header ?? []) {
    const colon = header.indexOf(':');
    if (colon <= 0) {
      process.stderr.write(`grpc-call: header '${header}' is not name:value\n`);
      return 2;
    }
    headers[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim();
  }
  try {
    const result = await grpcCall(url, method, headers, timeout);
    const { status, grpcStatus, grpcMessage, reply } = result;
    process.stdout.write(JSON.stringify({ status, grpcStatus, grpcMessage, reply }) + '\n');
    return grpcStatus === 0 ? 0 : 1;
  } catch (err) {
    process.stderr.write(`grpc-call: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
