/** One jest run covers unit specs next to the code and integration/e2e suites under test/. */
const tsJest = ['ts-jest', { tsconfig: 'tsconfig.jest.json' }];
const moduleNameMapper = { '^@vmkeep/([a-z-]+)$': '<rootDir>/libs/$1/src' };
module.exports = {
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      rootDir: __dirname,
      testMatch: ['<rootDir>/libs/**/*.spec.ts', '<rootDir>/apps/**/*.spec.ts'],
      transform: { '^.+\\.ts$': tsJest },
      moduleNameMapper,
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      rootDir: __dirname,
      testMatch: ['<rootDir>/test/**/*.test.ts'],
      transform: { '^.+\\.ts$': tsJest },
      moduleNameMapper,
      globalSetup: '<rootDir>/test/peers/global-setup.ts',
      globalTeardown: '<rootDir>/test/peers/global-teardown.ts',
      // Minutes per test and hook (a `testTimeout` here would be ignored: jest only reads it at the top level).
      setupFilesAfterEnv: ['<rootDir>/test/peers/jest-setup.ts'],
    },
  ],
};
