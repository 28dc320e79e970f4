// The console driven like a person would, in Debian's Chromium through
// playwright-core (which downloads no browser): type a query, accept a
// completion, run it as one identity and then another, read the result and
// the live panel, keep a screenshot. Prints what it saw as one JSON line;
// devstack/tests/playground_browser.rs asserts on it.
//
//   node devstack/console/browser-test.mjs http://127.0.0.1:4000 target/artifacts/console.png
//   (run by devstack/tests/playground_browser.rs, which passes CHROMIUM and CHROMIUM_FLAGS)

import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: browser-test.mjs URL SCREENSHOT.png");
  process.exit(2);
}

// The test passes the browser and its flags (CHROMIUM, CHROMIUM_FLAGS).
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: (process.env.CHROMIUM_FLAGS || "--no-sandbox").split(" ").filter(Boolean),
});
const seen = { consoleErrors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
  page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
  await page.goto(`${url}/?identity=teacher-a`);

  // The schema is loaded through introspection: the docs explorer's button is enabled.
  const editor = page.locator(".graphiql-query-editor .CodeMirror");
  await editor.waitFor();
  await page.waitForFunction(() => {
    const button = document.querySelector('[aria-label="Show Documentation Explorer"]');
    return button && !button.disabled;
  });

  // Clear the editor, then type: the completion list offers getAssessments.
  await editor.click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.type("{ getAs", { delay: 40 });
  const hints = page.locator(".CodeMirror-hints .CodeMirror-hint");
  await hints.first().waitFor({ timeout: 5000 });
  seen.completions = await hints.allTextContents();
  await page.keyboard.press("Enter");
  seen.afterCompletion = await page.evaluate(() =>
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.getValue(),
  );

  // The rest of the query, typed; then the editor's text is set exactly
  // (auto-closed brackets make typed text differ by design).
  await page.keyboard.type('(studentId: "stu-0001", limit: 2', { delay: 10 });
  const query = '{ getAssessments(studentId: "stu-0001", limit: 2) { items { id benchmarkBand } nextToken } }';
  await page.evaluate((q) => {
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(q);
  }, query);

  const result = async () =>
    page.evaluate(() => {
      const cm = document.querySelector(".result-window .CodeMirror");
      return cm ? cm.CodeMirror.getValue() : "";
    });
  const run = async () => {
    // The editor's change reaches GraphiQL's state (the operation name) debounced.
    await page.waitForTimeout(500);
    const before = await result();
    await page.locator(".graphiql-execute-button").click();
    await page.waitForFunction(
      (previous) => {
        const cm = document.querySelector(".result-window .CodeMirror");
        const text = cm ? cm.CodeMirror.getValue() : "";
        return text.trim().startsWith("{") && text !== previous;
      },
      before,
      { timeout: 20000 },
    );
    return JSON.parse(await result());
  };

  seen.asTeacherA = await run();
  // The panel refreshes after each request and every second: handles back to 0.
  await page.waitForFunction(() => document.getElementById("panel-last-total").textContent.endsWith("ms"));
  await page.waitForTimeout(1200);
  const panel = {};
  for (const id of ["panel-live-handles", "panel-violations", "panel-workers", "panel-crashes",
    "panel-pool", "panel-last-total", "panel-last-dynamodb", "panel-last-sql",
    "panel-last-legacy", "panel-last-items", "panel-invocations"]) {
    panel[id] = await page.locator(`#${id}`).textContent();
  }
  seen.panel = panel;
  // With --trace: the request's spans, as the panel lists them.
  await page.waitForFunction(
    () => document.getElementById("panel-trace").textContent.includes("legacy component"),
    null,
    { timeout: 5000 },
  );
  seen.trace = await page.$$eval("#panel-trace li .span", (rows) =>
    rows.map((row) => ({ name: row.children[0].textContent, time: row.children[1].textContent })));
  seen.link = page.url();

  // Another school's teacher: refused.
  await page.selectOption("#identity", "teacher-b");
  seen.asTeacherB = await run();
  seen.linkAfterIdentity = page.url();

  // Inline validation: an unknown field is marked in the editor.
  await page.evaluate(() => {
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(
      '{ getAssessments(studentId: "stu-0001") { nope } }',
    );
  });
  await page.locator(".graphiql-query-editor .CodeMirror-lint-mark-error").first().waitFor({ timeout: 5000 });
  seen.lintMarks = await page.locator(".graphiql-query-editor .CodeMirror-lint-mark-error").count();

  // For the picture: the default query (with its variables), as teacher A.
  await page.selectOption("#identity", "teacher-a");
  await page.evaluate((q) => {
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(q);
  }, [
    "query Page($studentId: ID!, $limit: Int) {",
    "  getAssessments(studentId: $studentId, limit: $limit) {",
    "    items { id assessmentType scaledScore percentile benchmarkBand }",
    "    nextToken",
    "  }",
    "}",
  ].join("\n"));
  await run();
  await page.waitForTimeout(1200);
  await page.screenshot({ path: screenshot });
  seen.screenshot = screenshot;
} catch (error) {
  seen.error = String(error);
  process.exitCode = 1;
  // What the panel was drawn from, to tell a page fault from a server one.
  try {
    seen.statsAtError = await (await fetch(new URL("/stats", url))).json();
  } catch (e) {
    seen.statsAtError = String(e);
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
