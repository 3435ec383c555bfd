// Runs the body of an `actions/github-script` step as the action does (an async function of
// github, context, core and require), against a fake of the few GitHub API calls the example
// workflow makes. Usage: node github_script.js SCRIPT_FILE GITHUB_JSON
// GITHUB_JSON holds {context, comments, commit_comments, pulls, runs}; it is written back with
// what the script changed, and with the step's outputs and warnings.
'use strict';
const fs = require('fs');

const [scriptFile, stateFile] = process.argv.slice(2);
const state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
state.outputs = {};
state.warnings = state.warnings || [];
const PAGE = 2; // small pages, so that a script that reads only the first one is caught

function onIssue(params) {
  const number = String(params.issue_number);
  if (!Number.isInteger(params.issue_number)) throw new Error(`issue_number ${number}: not a number`);
  if (params.owner !== state.context.repo.owner || params.repo !== state.context.repo.repo) {
    throw new Error(`another repository: ${params.owner}/${params.repo}`);
  }
  state.comments[number] = state.comments[number] || [];
  return state.comments[number];
}

function body(text) {
  if (typeof text !== 'string' || !text) throw new Error('empty comment body');
  if (text.length > 65536) throw new Error(`Validation Failed: body is too long (${text.length})`);
  return text;
}

const github = {
  // Every page of a list, as Octokit's paginate does.
  paginate: async (method, params) => {
    const items = [];
    for (let page = 1; ; page++) {
      const { data } = await method({ ...params, page, per_page: PAGE });
      items.push(...data);
      if (data.length < PAGE) return items;
    }
  },
  rest: {
    issues: {
      listComments: async (params) => {
        const all = onIssue(params);
        const page = params.page || 1, size = params.per_page || 30;
        return { data: all.slice((page - 1) * size, page * size) };
      },
      createComment: async (params) => {
        const comment = { id: state.next_id++, body: body(params.body) };
        onIssue(params).push(comment);
        return { data: comment };
      },
      updateComment: async (params) => {
        const comment = Object.values(state.comments).flat().find((c) => c.id === params.comment_id);
        if (!comment) throw new Error(`Not Found: comment ${params.comment_id}`);
        comment.body = body(params.body);
        return { data: comment };
      },
    },
    repos: {
      listPullRequestsAssociatedWithCommit: async (params) => ({
        data: state.pulls.filter((p) => p.merge_commit_sha === params.commit_sha),
      }),
      createCommitComment: async (params) => {
        state.commit_comments.push({ commit_sha: params.commit_sha, body: body(params.body) });
        return { data: {} };
      },
    },
    actions: {
      listWorkflowRunsForRepo: async (params) => ({
        data: {
          workflow_runs: state.runs.filter(
            (r) => r.event === params.event && r.head_sha === params.head_sha &&
              (!params.status || r.status === params.status)),
        },
      }),
    },
  },
};

const core = {
  setOutput: (name, value) => { state.outputs[name] = String(value); },
  warning: (message) => { state.warnings.push(String(message)); },
};

const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor;
const script = new AsyncFunction('github', 'context', 'core', 'require', fs.readFileSync(scriptFile, 'utf8'));
script(github, state.context, core, require).then(
  () => fs.writeFileSync(stateFile, JSON.stringify(state, null, 1)),
  (error) => { console.error(String(error && error.stack || error)); process.exit(1); },
);
