import { PrometheusText } from './prometheus';

describe('PrometheusText', () => {
  it('writes HELP/TYPE headers, labelled samples with escaping, and cumulative histograms', () => {
    const text = new PrometheusText()
      .counter('vmkeep_jobs_total', 'Finished jobs\nby type', [
        { labels: { type: 'backup', state: 'failed' }, value: 2 },
        { labels: { type: 'say "hi"\\' }, value: 1 },
      ])
      .gauge('vmkeep_up', 'Up', [{ value: 1 }])
      .histogram('vmkeep_job_duration_seconds', 'Durations', [1, 10], [{ labels: { type: 'backup' }, observations: [0.5, 3, 30] }])
      .toString();
    expect(text).toBe(
      [
        '# HELP vmkeep_jobs_total Finished jobs\\nby type',
        '# TYPE vmkeep_jobs_total counter',
        'vmkeep_jobs_total{type="backup",state="failed"} 2',
        'vmkeep_jobs_total{type="say \\"hi\\"\\\\"} 1',
        '# HELP vmkeep_up Up',
        '# TYPE vmkeep_up gauge',
        'vmkeep_up 1',
        '# HELP vmkeep_job_duration_seconds Durations',
        '# TYPE vmkeep_job_duration_seconds histogram',
        'vmkeep_job_duration_seconds_bucket{type="backup",le="1"} 1',
        'vmkeep_job_duration_seconds_bucket{type="backup",le="10"} 2',
        'vmkeep_job_duration_seconds_bucket{type="backup",le="+Inf"} 3',
        'vmkeep_job_duration_seconds_sum{type="backup"} 33.5',
        'vmkeep_job_duration_seconds_count{type="backup"} 3',
        '',
      ].join('\n'),
    );
  });

  it('refuses bad or repeated names', () => {
    expect(() => new PrometheusText().gauge('bad-name', 'x', [])).toThrow(/invalid metric name/);
    expect(() => new PrometheusText().gauge('a', 'x', [{ labels: { 'b-c': '1' }, value: 1 }])).toThrow(/invalid label name/);
    expect(() => new PrometheusText().gauge('a', 'x', []).gauge('a', 'y', [])).toThrow(/written twice/);
  });
});
