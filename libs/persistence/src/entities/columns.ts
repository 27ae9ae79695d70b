import { ValueTransformer } from 'typeorm';

/** MySQL returns BIGINT as a string; every size in VMKeep fits a JS safe integer. */
export const bigintToNumber: ValueTransformer = {
  to: (v: number | null | undefined) => v,
  from: (v: string | number | null) => (v === null || v === undefined ? v : Number(v)),
};

