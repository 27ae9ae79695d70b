// setupFilesAfterEnv of the "integration" project. Its suites start real servers and the compiled appliance
// (building dist/ when stale), so a test or hook may take minutes, not jest's 5 s. jest reads `testTimeout` only
// from the top-level config, never from a project entry, and a top-level value would also give every unit spec
// minutes to hang: hence this per-project setting.
jest.setTimeout(300_000);
