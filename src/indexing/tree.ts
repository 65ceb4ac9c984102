/** What inference reads of a repository at one commit (the coordinator backs it with git). */
export interface SourceTree {
  /** Every file path, relative to the top, "/"-separated. */
  files(): Promise<string[]>;
  /** A file's text, or undefined when there is no such file. */
  read(path: string): Promise<string | undefined>;
}

/** A tree held in memory (tests, and trees already read). */
export function memoryTree(files: Record<string, string>): SourceTree {
  return {
    files: async () => Object.keys(files).sort(),
    read: async (path) => files[path],
  };
}
