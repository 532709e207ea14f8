-- End-to-end test of the nextword plugin with Neovim's built-in LSP client and the real server. Run by
-- tests/test_clients.py as
--   nvim --headless --clean -u NONE --cmd 'set rtp+=clients/nvim' -l clients/nvim/tests/e2e.lua
-- with, in the environment:
--   NEXTWORD_TEST_SCENARIO  main | legacy | not_found | exits | bad_db
--   NEXTWORD_TEST_CMD       the server command, a JSON list
--   NEXTWORD_TEST_DIR       a folder for the documents
--   NEXTWORD_TEST_OUT       where to write what was observed, as JSON (the pytest test asserts on it)
-- A step that times out raises an error: the result file then has `error`, and nvim exits non-zero.
local scenario = assert(os.getenv('NEXTWORD_TEST_SCENARIO'))
local cmd = vim.json.decode(assert(os.getenv('NEXTWORD_TEST_CMD')))
local dir = assert(os.getenv('NEXTWORD_TEST_DIR'))
local out = assert(os.getenv('NEXTWORD_TEST_OUT'))

local result = { scenario = scenario, nvim = tostring(vim.version()), notes = {} }

-- Every message the plugin or Nvim's LSP client shows goes through vim.notify.
vim.notify = function(message, level)
  table.insert(result.notes, { message = message, level = level or vim.log.levels.INFO })
end

local function wait(what, condition, timeout)
  if not vim.wait(timeout or 20000, condition, 20) then
    error('timed out waiting for ' .. what, 2)
  end
end

--- The first note whose message matches `pattern` (a Lua pattern), after waiting for it.
local function note(pattern)
  local found
  wait('a message matching ' .. pattern, function()
    for _, n in ipairs(result.notes) do
      if n.message:find(pattern) then
        found = n
        return true
      end
    end
    return false
  end)
  return found
end

--- Run an Ex command and return the next message it shows.
local function shown_by(command)
  local before = #result.notes
  vim.cmd(command)
  wait('a message from :' .. command, function()
    return #result.notes > before
  end)
  return result.notes[before + 1]
end

local function type_keys(keys)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(keys, true, false, true), 'xt', false)
end

local function nextword_clients(buf)
  return vim.lsp.get_clients({ bufnr = buf, name = 'nextword' })
end

local function open_markdown(name)
  vim.cmd.edit(dir .. '/' .. name)
  local buf = vim.api.nvim_get_current_buf()
  result.filetype = vim.bo[buf].filetype
  return buf
end

local function odd_words(buf)
  local found = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    if d.code == 'odd-word' then
      table.insert(found, d)
    end
  end
  return found
end

local function completion_labels(buf, line, character)
  local params = { textDocument = { uri = vim.uri_from_bufnr(buf) }, position = { line = line, character = character } }
  local responses = assert(vim.lsp.buf_request_sync(buf, 'textDocument/completion', params, 10000))
  local labels, sort_texts = {}, {}
  for _, response in pairs(responses) do
    assert(not response.err, vim.inspect(response.err))
    local items = response.result.items or response.result
    for _, item in ipairs(items) do
      table.insert(labels, item.label)
      table.insert(sort_texts, item.sortText)
    end
  end
  return labels, sort_texts
end

local function stop_clients()
  local clients = vim.lsp.get_clients({ name = 'nextword' })
  for _, client in ipairs(clients) do
    client:stop()
  end
  wait('the server to stop', function()
    for _, client in ipairs(clients) do
      if not client:is_stopped() then
        return false
      end
    end
    return true
  end, 5000)
end

local scenarios = {}

--- Type, complete, check, use the commands: the plugin as a user meets it.
function scenarios.main(nextword)
  -- adaptation off: the test compares the completions with the store's own model, computed in process
  result.setup = nextword.setup({ cmd = cmd, settings = { debounceMs = 0, adaptation = false } })
  local buf = open_markdown('notes.md')
  wait('the client to attach', function()
    return #nextword_clients(buf) == 1
  end)
  local client = nextword_clients(buf)[1]
  result.language_id = client.config.get_language_id(buf, vim.bo[buf].filetype)
  result.init_options = client.config.init_options
  result.root_dir = client.root_dir or vim.NIL
  result.builtin_autotrigger = #vim.api.nvim_get_autocmds({ buffer = buf, event = 'InsertCharPre' }) > 0
  result.completeopt = { global = vim.go.completeopt, buffer = vim.bo[buf].completeopt }
  if vim.lsp.inline_completion then
    result.inline_completion = vim.lsp.inline_completion.is_enabled({ bufnr = buf })
  end

  -- Type in Insert mode; at the end, still in Insert mode, wait for the built-in completion popup that typing the
  -- space opened (autotrigger on the server's trigger character).
  _G.nextword_test_popup = function()
    local function words()
      local found = {}
      for _, item in ipairs(vim.fn.complete_info({ 'items' }).items or {}) do
        table.insert(found, item.word)
      end
      return found
    end
    if result.builtin_autotrigger and vim.wait(10000, function() return #words() > 0 end, 20) then
      vim.wait(200) -- any later response replaces the items
      result.popup = words()
    end
  end
  type_keys('iTheir is a problem.<CR><CR>The cat sat on the <Cmd>lua _G.nextword_test_popup()<CR><Esc>')
  result.lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  result.labels, result.sort_texts = completion_labels(buf, 2, #result.lines[3])

  wait('the odd-word diagnostic', function()
    return #odd_words(buf) > 0
  end)
  result.diagnostics = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    table.insert(result.diagnostics, {
      lnum = d.lnum,
      col = d.col,
      end_col = d.end_col,
      message = d.message,
      severity = d.severity,
      source = d.source,
      code = d.code,
    })
  end
  table.sort(result.diagnostics, function(a, b)
    return a.code < b.code
  end)
  wait('the perplexity', function()
    return nextword.statusline(buf) ~= ''
  end)
  result.statusline = nextword.statusline(buf)
  result.perplexity = vim.b[buf].nextword

  result.pause = shown_by('NextwordPause')
  result.statusline_paused = nextword.statusline(buf)
  result.stats = shown_by('NextwordStats')
  result.retrain = shown_by('NextwordRetrainNeural')
  result.forget = shown_by('NextwordForget')
  result.ignore = shown_by('NextwordIgnore Their')
  wait('the oddity to go once ignored', function()
    return #odd_words(buf) == 0
  end)
  result.resume = shown_by('NextwordResume')
  result.statusline_resumed = nextword.statusline(buf)

  -- Inline completion (ghost text), where Nvim has it: typed, shown as virtual text, accepted.
  _G.nextword_test_ghost = function()
    local namespace = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion'] or -1
    local function ghost()
      for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(buf, namespace, 0, -1, { details = true })) do
        if mark[4].virt_text then
          return table.concat(vim.tbl_map(function(chunk)
            return chunk[1]
          end, mark[4].virt_text))
        end
      end
    end
    if vim.wait(10000, function() return ghost() ~= nil end, 20) then
      result.ghost = ghost()
      result.ghost_accepted = vim.lsp.inline_completion.get()
      vim.wait(100)
    end
  end
  if result.inline_completion then
    type_keys('Go<CR>I have a dog. The dog s<Cmd>lua _G.nextword_test_ghost()<CR><Esc>')
    result.ghost_line = vim.api.nvim_buf_get_lines(buf, -2, -1, false)[1]
  end

  result.learn_workspace = shown_by('NextwordLearnWorkspace')
  result.stats_after = shown_by('NextwordStats')

  vim.cmd('checkhealth nextword')
  result.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  vim.cmd('bwipeout')
  result.user_commands = vim.tbl_keys(vim.api.nvim_get_commands({}))
  table.sort(result.user_commands)
  stop_clients()
end

--- Nvim before 0.11 (no vim.lsp.config): the plugin starts the client with vim.lsp.start on FileType.
function scenarios.legacy(nextword)
  nextword._has_lsp_config = function()
    return false
  end
  result.setup = nextword.setup({ cmd = cmd, settings = { debounceMs = 0 } })
  local buf = open_markdown('legacy.md')
  wait('the client to attach', function()
    return #nextword_clients(buf) == 1
  end)
  result.enabled_configs = vim.lsp._enabled_configs and vim.tbl_keys(vim.lsp._enabled_configs) or {}
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { 'Their is a problem.', '', 'The cat sat on the ' })
  result.labels = completion_labels(buf, 2, 19)
  wait('the odd-word diagnostic', function()
    return #odd_words(buf) > 0
  end)
  result.odd = odd_words(buf)[1].message
  stop_clients()
end

--- The server command does not exist: an error naming it, no client, and the commands say the server is not running.
function scenarios.not_found(nextword)
  result.setup = nextword.setup({ cmd = cmd })
  local buf = open_markdown('missing.md')
  vim.wait(500)
  result.clients = #nextword_clients(buf)
  vim.cmd('NextwordStats')
  note('server is not running')
end

--- The server exits as soon as it starts.
function scenarios.exits(nextword)
  result.setup = nextword.setup({ cmd = cmd })
  open_markdown('exits.md')
  note('the server exited')
end

--- The store cannot be opened: the server's window/showMessage reaches the user.
function scenarios.bad_db(nextword)
  result.setup = nextword.setup({ cmd = cmd })
  local buf = open_markdown('bad.md')
  wait('the client to attach', function()
    return #nextword_clients(buf) == 1
  end)
  note('cannot open its store')
  stop_clients()
end

local ok, err = xpcall(function()
  vim.cmd('filetype on')
  scenarios[scenario](require('nextword'))
end, debug.traceback)
if not ok then
  result.error = err
end
vim.fn.writefile({ vim.json.encode(result) }, out)
if not ok then
  error(err)
end
