// Lint rules, including the layering rules of DESIGN.md:
//   protocol <- store, runtimes <- coordinator (never runtimes), executor (never store, coordinator)
import js from "@eslint/js";
import tseslint from "typescript-eslint";

const layer = (from, forbidden, why) => ({
  files: [`src/${from}/**/*.ts`],
  rules: {
    "no-restricted-imports": [
      "error",
      { patterns: forbidden.map((target) => ({ group: [`**/${target}/**`, `**/${target}/*.ts`, `**/${target}`], message: why })) },
    ],
  },
});

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", ".tools/**", "web/dist/**", "**/*.js", "!eslint.config.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
      "@typescript-eslint/only-throw-error": "error",
      "@typescript-eslint/require-await": "off",
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: false }],
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true, allowBoolean: true, allowNullish: true }],
      "no-console": "error",
      "no-restricted-properties": ["error", { object: "process", property: "env", message: "Read configuration once, in src/cli/main.ts, and pass it down." }],
    },
  },
  { files: ["src/cli/main.ts", "test/**/*.ts", "bench/**/*.ts", "web/build.ts", "scripts/**/*.ts"], rules: { "no-restricted-properties": "off", "no-console": "off" } },
  { files: ["test/**/*.ts", "bench/**/*.ts"], rules: { "@typescript-eslint/no-floating-promises": "off", "@typescript-eslint/no-non-null-assertion": "off" } },
  { files: ["eslint.config.js"], ...tseslint.configs.disableTypeChecked },
  layer("protocol", ["store", "coordinator", "executor", "runtimes", "cli", "common"], "protocol imports nothing of Airlock's (and nothing of Node)"),
  {
    files: ["src/protocol/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: [{ group: ["node:*", "**/store/**", "**/coordinator/**", "**/executor/**", "**/runtimes/**", "**/cli/**", "**/common/**"], message: "protocol has no Node imports and depends on nothing of Airlock's" }] }] },
  },
  layer("store", ["coordinator", "executor", "runtimes", "cli"], "the store depends only on protocol and common"),
  layer("runtimes", ["store", "coordinator", "executor", "cli"], "runtimes depend only on protocol and common"),
  layer("coordinator", ["runtimes", "executor", "egress", "cli", "web"], "the coordinator never imports runtimes, the executor or web/ code (it serves the built UI from disk)"),
  layer("executor", ["store", "coordinator", "cli"], "the executor speaks only the protocol: never store or coordinator"),
  layer("common", ["store", "coordinator", "executor", "runtimes", "cli", "egress"], "common is shared by everyone and depends on no component"),
  layer("egress", ["store", "coordinator", "executor", "runtimes", "cli"], "the egress gateway depends only on protocol and common; the executor owns it"),
  layer("indexing", ["store", "coordinator", "executor", "runtimes", "egress", "cli"], "indexing (inference, the SCIP reader) depends only on protocol and common; the coordinator uses it"),
  {
    // The browser UI: DOM globals come from its own tsconfig (web/src/tsconfig.json); of Airlock
    // it may use the protocol only (the coordinator serves the built files, never imports them).
    files: ["web/src/**/*.ts", "web/src/**/*.tsx"],
    rules: { "no-restricted-imports": ["error", { patterns: [{ group: ["node:*", "**/src/store/**", "**/src/coordinator/**", "**/src/executor/**", "**/src/runtimes/**", "**/src/cli/**", "**/src/common/**"], message: "the web UI runs in a browser and speaks only the protocol" }] }] },
  },
);
