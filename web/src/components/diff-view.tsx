/** A job's diff: a file list with counts, then each file's hunks with line numbers and colours. */
import { useState } from "preact/hooks";
import { displayPath, type DiffFile } from "../diff.ts";

/** Files longer than this start folded, so a huge rewrite does not freeze the page. */
const FOLD_LINES = 2000;

function fileIdFor(prefix: string, index: number): string {
  return `${prefix}-${index}`;
}

function DiffFileView({ file, index, idPrefix }: { file: DiffFile; index: number; idPrefix: string }) {
  const fileId = (at: number): string => fileIdFor(idPrefix, at);
  const lineCount = file.hunks.reduce((sum, hunk) => sum + hunk.lines.length, 0);
  const [open, setOpen] = useState(lineCount <= FOLD_LINES);
  return (
    <section class="diff-file" id={fileId(index)} aria-labelledby={`${fileId(index)}-title`}>
      <header class="diff-file-header">
        <h3 id={`${fileId(index)}-title`} class="diff-path">
          {displayPath(file)}
        </h3>
        <span class={`diff-status diff-status-${file.status}`}>{file.status}</span>
        <span class="diff-counts">
          <span class="diff-add-count">+{file.additions}</span> <span class="diff-del-count">−{file.deletions}</span>
        </span>
        {lineCount > 0 ? (
          <button type="button" class="button small" aria-expanded={open} onClick={() => setOpen(!open)}>
            {open ? "Fold" : `Show ${lineCount.toLocaleString()} lines`}
          </button>
        ) : null}
      </header>
      {file.binary ? <p class="muted diff-note">Binary file; not shown.</p> : null}
      {!file.binary && lineCount === 0 ? <p class="muted diff-note">{file.notes.join("; ") || "No content changes."}</p> : null}
      {open && lineCount > 0 ? (
        <table class="diff-table">
          <caption class="visually-hidden">Changes to {displayPath(file)}</caption>
          <thead class="visually-hidden">
            <tr>
              <th scope="col">Old line</th>
              <th scope="col">New line</th>
              <th scope="col">Change</th>
            </tr>
          </thead>
          {file.hunks.map((hunk, hunkIndex) => (
            <tbody key={hunkIndex}>
              <tr class="diff-hunk">
                <td colSpan={3}>{hunk.header}</td>
              </tr>
              {hunk.lines.map((line, lineIndex) => (
                <tr key={lineIndex} class={`diff-line diff-${line.kind}`}>
                  <td class="diff-num">{line.oldLine ?? ""}</td>
                  <td class="diff-num">{line.newLine ?? ""}</td>
                  <td class="diff-code">
                    <span class="diff-marker" aria-label={line.kind === "add" ? "added" : line.kind === "del" ? "removed" : undefined}>
                      {line.kind === "add" ? "+" : line.kind === "del" ? "−" : " "}
                    </span>
                    {line.text}
                  </td>
                </tr>
              ))}
            </tbody>
          ))}
        </table>
      ) : null}
    </section>
  );
}

/** `idPrefix` keeps element ids unique when a page shows several diffs (a batch's entries). */
export function DiffView({ files, idPrefix = "diff-file" }: { files: DiffFile[]; idPrefix?: string }) {
  const fileId = (at: number): string => fileIdFor(idPrefix, at);
  if (files.length === 0) return <p class="muted">The job changed no files.</p>;
  const additions = files.reduce((sum, file) => sum + file.additions, 0);
  const deletions = files.reduce((sum, file) => sum + file.deletions, 0);
  return (
    <div class="diff">
      <nav class="diff-files" aria-label="Changed files">
        <p>
          {files.length} {files.length === 1 ? "file" : "files"} changed, <span class="diff-add-count">+{additions}</span>{" "}
          <span class="diff-del-count">−{deletions}</span>
        </p>
        <ul>
          {files.map((file, index) => (
            <li key={index}>
              <a href={`#${fileId(index)}`} class="diff-file-link">
                <span class={`diff-status-dot diff-status-${file.status}`} aria-hidden="true" />
                {displayPath(file)}
              </a>{" "}
              <span class="diff-add-count">+{file.additions}</span> <span class="diff-del-count">−{file.deletions}</span>
            </li>
          ))}
        </ul>
      </nav>
      {files.map((file, index) => (
        <DiffFileView key={index} file={file} index={index} idPrefix={idPrefix} />
      ))}
    </div>
  );
}
