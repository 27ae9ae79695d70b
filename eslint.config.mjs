// Lint configuration. The import rule of DESIGN.md is enforced here: pure libraries import no Nest, TypeORM,
// BullMQ or ioredis, and only apps import the Nest libraries.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const PURE_LIBS = ['contracts', 'disk', 'disk-formats', 'repository', 'vsphere', 'nbd', 'nfs', 'filesystems', 'file-index'];
const NEST_LIBS = ['config', 'persistence', 'queue', 'inventory', 'backup', 'restore', 'policies', 'repositories'];
const frameworkPatterns = [
  { group: ['@nestjs/*', 'typeorm', 'typeorm/*', 'bullmq', 'ioredis'], message: 'pure libraries must not import framework packages (DESIGN.md import rule)' },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
  {
    files: PURE_LIBS.map((l) => `libs/${l}/**/*.ts`),
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [...frameworkPatterns, { group: NEST_LIBS.map((l) => `@vmkeep/${l}`), message: 'pure libraries must not import Nest libraries' }],
      }],
    },
  },
  {
    files: NEST_LIBS.map((l) => `libs/${l}/**/*.ts`),
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['../../../apps/*', '**/apps/*'], message: 'libraries must not import apps' }],
      }],
    },
  },
  {
    files: ['test/**/*.ts', '**/*.spec.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
