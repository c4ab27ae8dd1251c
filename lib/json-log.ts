// The log of every Sluice process (controller, injector, proxy, init-iptables, wait-ready): one JSON object
// per line on stdout, {time, level, component, msg, ...fields}, so a log pipeline can index fields without
// parsing prose. Messages stay one line; fields carry the details. docs/logging.md lists the fields.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const RESERVED = new Set(['time', 'level', 'component', 'msg']);

/** One log line (with its newline). Fields named like the envelope are prefixed; errors become their message. */
export function formatLogLine(
  component: string,
  level: LogLevel,
  msg: string,
  fields: LogFields = {},
  now = new Date(),
): string {
  const record: Record<string, unknown> = {
    time: now.toISOString(),
    level,
    component,
    msg: msg.replace(/\s*\n\s*/g, ' '),
  };
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    record[RESERVED.has(key) ? `field_${key}` : key] = value instanceof Error ? value.message : value;
  }
  try {
    return `${JSON.stringify(record)}\n`;
  } catch {
    // A field that cannot be serialized (a cycle, a BigInt) must not lose the line.
    return `${JSON.stringify({ time: record.time, level, component, msg: record.msg, fields: 'unserializable' })}\n`;
  }
}

/** `component` names the process role: controller, injector, proxy, init-iptables, wait-ready. */
export function jsonLogger(
  component: string,
  write: (line: string) => void = (line) => process.stdout.write(line),
): Logger {
  return {
    info: (msg, fields) => write(formatLogLine(component, 'info', msg, fields)),
    warn: (msg, fields) => write(formatLogLine(component, 'warn', msg, fields)),
    error: (msg, fields) => write(formatLogLine(component, 'error', msg, fields)),
  };
}
