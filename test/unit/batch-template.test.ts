/** The batch template engine: parsing, evaluation, checks by scope, partial (static) rendering, conditions. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkTemplate, conditionHolds, globToRegExp, renderTemplate, stepScope, TemplateError, type TemplateContext } from "../../src/protocol/batch-template.ts";

const context: TemplateContext = {
  repository: { name: "acme/web", branch: "main" },
  batch: { name: "rename", description: "Rename things" },
  steps: { path: "packages/a", modified_files: ["a.txt", "b/c.txt"], added_files: ["new.md"], deleted_files: [] },
  previous_step: { stdout: "  3\n", stderr: "warn\n", exit_code: 0, modified_files: ["a.txt"], added_files: [], deleted_files: [] },
  outputs: { count: "3", info: { owner: "team-x", tags: ["a", "b"] }, empty: "" },
};

describe("batch templates", () => {
  it("renders variables, nested outputs, lists and literals", () => {
    assert.equal(renderTemplate("repo ${{ repository.name }} on ${{repository.branch}}", context), "repo acme/web on main");
    assert.equal(renderTemplate("${{ batch.name }}/${{ steps.path }}", context), "rename/packages/a");
    assert.equal(renderTemplate("${{ outputs.info.owner }} ${{ outputs.info.tags[1] }} ${{ outputs['count'] }}", context), "team-x b 3");
    assert.equal(renderTemplate("${{ steps.modified_files }}", context), "a.txt b/c.txt");
    assert.equal(renderTemplate("${{ outputs.info }}", context), '{"owner":"team-x","tags":["a","b"]}');
    assert.equal(renderTemplate("${{ 'it\\'s' }}|${{ \"q\\\"\" }}|${{ 42 }}|${{ null }}|${{ true }}", context), "it's|q\"|42||true");
    assert.equal(renderTemplate("a ${{ \"}}\" }} b", context), "a }} b");
    assert.equal(renderTemplate("no templates $HOME {{ x }}", context), "no templates $HOME {{ x }}");
    assert.equal(renderTemplate("${{ outputs.unknown }}|${{ outputs.info.nothing.deeper }}", context), "|");
  });

  it("calls functions and evaluates operators", () => {
    assert.equal(renderTemplate("${{ join(steps.modified_files, ',') }}", context), "a.txt,b/c.txt");
    assert.equal(renderTemplate("${{ trim(previous_step.stdout) }}", context), "3");
    assert.equal(renderTemplate("${{ upper(replace(repository.name, '/', '-')) }}", context), "ACME-WEB");
    assert.equal(renderTemplate("${{ len(split('a b  c', ' ')) }}", context), "3");
    assert.equal(renderTemplate("${{ contains(steps.modified_files, 'a.txt') }} ${{ contains(repository.name, 'web') }}", context), "true true");
    assert.equal(renderTemplate("${{ matches(repository.name, 'acme/*') }} ${{ matches(repository.name, 'other/*') }}", context), "true false");
    assert.equal(renderTemplate("${{ repository.name == 'acme/web' && 'yes' || 'no' }}", context), "yes");
    assert.equal(renderTemplate("${{ repository.name != 'acme/web' && 'yes' || 'no' }}", context), "no");
    assert.equal(renderTemplate("${{ !outputs.empty }} ${{ not(outputs.count) }} ${{ default(outputs.empty, 'none') }}", context), "true false none");
    assert.equal(renderTemplate("${{ (eq(outputs.count, 3) || false) && startsWith(batch.name, 're') }}", context), "true");
    assert.equal(renderTemplate("${{ json(steps.added_files) }}", context), '["new.md"]');
  });

  it("reports syntax errors with the column", () => {
    const column = (text: string): number => {
      try {
        renderTemplate(text, context);
      } catch (error) {
        assert.ok(error instanceof TemplateError);
        return error.column;
      }
      return assert.fail(`no error for ${text}`);
    };
    assert.equal(column("ab ${{ repository.name"), 4);
    assert.equal(column("${{ }}"), 5);
    assert.equal(column("${{ nope(1) }}"), 5);
    assert.equal(column("${{ join() }}"), 5);
    assert.equal(column("${{ a b }}"), 7);
    assert.throws(() => renderTemplate("${{ 'unclosed }}", context), TemplateError);
  });

  it("checks variables against where the template is", () => {
    assert.equal(checkTemplate("${{ repository.name }} ${{ steps.path }}", stepScope(0, [])), true, "static only");
    assert.equal(checkTemplate("${{ outputs.count }}", stepScope(1, ["count"])), false);
    assert.throws(() => checkTemplate("${{ repository.nme }}", stepScope(0, [])), /unknown variable "repository.nme" \(known: repository.name, repository.branch\)/);
    assert.throws(() => checkTemplate("${{ previous_step.stdout }}", stepScope(0, [])), /"previous_step" is not available here/);
    assert.equal(checkTemplate("${{ previous_step.stdout }}", stepScope(1, [])), false);
    assert.throws(() => checkTemplate("${{ step.stdout }}", stepScope(1, [])), /"step" is not available here/);
    assert.equal(checkTemplate("${{ step.stdout }}", stepScope(1, [], { own: true })), false);
    assert.throws(() => checkTemplate("${{ outputs.later }}", stepScope(1, ["count"])), /output "later" is not declared by an earlier step \(declared: count\)/);
    assert.throws(() => checkTemplate("${{ secrets.TOKEN }}", stepScope(0, [])), /unknown variable "secrets"/);
    assert.throws(() => checkTemplate("${{ repository }}", stepScope(0, [])), /needs a field/);
  });

  it("renders only the static parts for the cache key, leaving the rest as written", () => {
    const staticOnly: TemplateContext = { repository: context.repository, batch: context.batch, steps: { path: "." } };
    assert.equal(
      renderTemplate("sed ${{ repository.name }} ${{ outputs.count }} ${{ join(steps.modified_files, ' ') }} ${{ steps.path }}", staticOnly, { partial: true }),
      "sed acme/web ${{ outputs.count }} ${{ join(steps.modified_files, ' ') }} .",
    );
    assert.equal(renderTemplate("${{ repository.name == 'acme/web' && outputs.count || '' }}", staticOnly, { partial: true }), "${{ repository.name == 'acme/web' && outputs.count || '' }}");
    assert.equal(renderTemplate("x${{ repository.name == 'acme/x' && outputs.count || '' }}", staticOnly, { partial: true }), "x", "short-circuited: the dynamic part is never needed");
  });

  it("runs a step when its condition renders exactly true", () => {
    assert.equal(conditionHolds(undefined, context), true);
    assert.equal(conditionHolds("true", context), true);
    assert.equal(conditionHolds("${{ eq(repository.name, 'acme/web') }}", context), true);
    assert.equal(conditionHolds("${{ outputs.count }}", context), false, "a non-boolean value is not true");
    assert.equal(conditionHolds("false", context), false);
  });

  it("matches globs: * within a segment, ** across, ? one character", () => {
    assert.ok(globToRegExp("acme/*").test("acme/web"));
    assert.ok(!globToRegExp("acme/*").test("acme/web/deep"));
    assert.ok(globToRegExp("acme/**").test("acme/web/deep"));
    assert.ok(globToRegExp("**").test("x/y"));
    assert.ok(globToRegExp("acme/repo-0?").test("acme/repo-07"));
    assert.ok(!globToRegExp("acme/a.c").test("acme/abc"), "dots are literal");
  });
});
