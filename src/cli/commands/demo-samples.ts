/** The demo's sample repositories and jobs, and what each job's diff must contain. */
import type { JobSpecInput } from "../../protocol/index.ts";

export const DEMO_REPOSITORIES: Record<string, Record<string, string>> = {
  "demo/greetings": {
    "README.md": "# Greetings\n\nA tiny repository for the Airlock demo.\n",
    "hello.txt": "Hello, world\nGoodbye, world\n",
  },
  "demo/calc": {
    "calc.sh": "#!/bin/sh\necho $(( $1 + $2 ))\n",
    "notes/old.txt": "This file is obsolete.\n",
  },
};

export interface DemoJob {
  title: string;
  spec: JobSpecInput;
  expectInDiff: string[];
}

/** Every step names an image, used by container runtimes and ignored by the shell runtime. */
const IMAGE = "airlock-test/busybox";

export const DEMO_JOBS: DemoJob[] = [
  {
    title: "rewrite a word across a file",
    spec: {
      repository: "demo/greetings",
      commit: "main",
      isolation: "none",
      steps: [
        { key: "rewrite", image: IMAGE, commands: ["echo rewriting hello.txt", "sed -i 's/world/Airlock/g' hello.txt", "cat hello.txt"] },
      ],
      outputs: { diff: true },
    },
    expectInDiff: ["-Hello, world", "+Hello, Airlock", "+Goodbye, Airlock"],
  },
  {
    title: "add, delete and generate files (one binary) in two steps",
    spec: {
      repository: "demo/calc",
      commit: "main",
      isolation: "none",
      steps: [
        { key: "add", image: IMAGE, commands: ["printf '#!/bin/sh\\necho 42\\n' > answer.sh", "rm notes/old.txt", "echo added answer.sh, removed notes/old.txt"] },
        { key: "binary", image: IMAGE, commands: ["printf 'BIN\\000\\001\\002\\003' > data.bin", "sh calc.sh 40 2"] },
      ],
      outputs: { diff: true },
    },
    expectInDiff: ["new file mode", "+echo 42", "deleted file mode", "-This file is obsolete.", "GIT binary patch"],
  },
  {
    title: "a step with a secret, redacted from its log and artifact",
    spec: {
      repository: "demo/greetings",
      isolation: "none",
      secrets: { API_KEY: "s3cr3t-demo-value" },
      files: { "input.json": { content: '{"name": "Airlock"}' } },
      steps: [
        {
          key: "report",
          image: IMAGE,
          commands: ['echo "the key is $API_KEY"', 'echo "report for $(cat input.json)" > report.txt', 'echo "key again: $API_KEY" >> report.txt', "cat report.txt"],
        },
      ],
      outputs: { diff: true, paths: ["report.txt"] },
    },
    expectInDiff: ["+key again: [REDACTED]"],
  },
];
