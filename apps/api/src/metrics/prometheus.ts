/**
 * A small writer of the Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE`, then one
 * `name{label="value"} number` line per sample. Histograms get cumulative `_bucket{le=…}` lines, `_sum` and `_count`.
 */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Record<string, string>;

export interface Sample {
  labels?: Labels;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export class PrometheusText {
  private readonly lines: string[] = [];
  private readonly names = new Set<string>();

  counter(name: string, help: string, samples: Sample[]): this {
    return this.family(name, 'counter', help, samples);
  }

  gauge(name: string, help: string, samples: Sample[]): this {
    return this.family(name, 'gauge', help, samples);
  }

  /** One histogram per label set, from raw observations; `buckets` are upper bounds, ascending (+Inf is added). */
  histogram(name: string, help: string, buckets: number[], series: { labels?: Labels; observations: number[] }[]): this {
    this.header(name, 'histogram', help);
    for (const { labels = {}, observations } of series) {
      for (const le of [...buckets, Infinity]) {
        const count = observations.filter((v) => v <= le).length;
        this.lines.push(sampleLine(`${name}_bucket`, { ...labels, le: formatValue(le) }, count));
      }
      this.lines.push(sampleLine(`${name}_sum`, labels, observations.reduce((a, b) => a + b, 0)));
      this.lines.push(sampleLine(`${name}_count`, labels, observations.length));
    }
    return this;
  }

  toString(): string {
    return this.lines.length ? `${this.lines.join('\n')}\n` : '';
  }

  private family(name: string, type: 'counter' | 'gauge', help: string, samples: Sample[]): this {
    this.header(name, type, help);
    for (const s of samples) this.lines.push(sampleLine(name, s.labels ?? {}, s.value));
    return this;
  }

  private header(name: string, type: string, help: string): void {
    if (!NAME.test(name)) throw new Error(`invalid metric name "${name}"`);
    if (this.names.has(name)) throw new Error(`metric "${name}" written twice`);
    this.names.add(name);
    this.lines.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`);
  }
}

function sampleLine(name: string, labels: Labels, value: number): string {
  const pairs = Object.entries(labels).map(([k, v]) => {
    if (!LABEL.test(k)) throw new Error(`invalid label name "${k}"`);
    return `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
  });
  return `${name}${pairs.length ? `{${pairs.join(',')}}` : ''} ${formatValue(value)}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}
