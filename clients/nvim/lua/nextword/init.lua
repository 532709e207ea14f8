--- nextword: local, private predictive text for prose, from the nextword language server.
---
--- The intelligence lives in the server; this plugin registers it with Neovim's LSP client (|vim.lsp.config()| and
--- |vim.lsp.enable()| on Nvim 0.11+, |vim.lsp.start()| before), turns on built-in completion and inline completion
--- where Nvim has them, keeps the document's perplexity for the statusline, and adds user commands. See
--- |nextword.txt|.
local M = {}

local NAME = 'nextword'
local levels = vim.log.levels

--- The server's commands (workspace/executeCommand).
M.commands = {
  learn_workspace = 'nextword.learnWorkspace',
  retrain_neural = 'nextword.retrainNeural',
  forget_document = 'nextword.forgetDocument',
  pause_learning = 'nextword.pauseLearning',
  resume_learning = 'nextword.resumeLearning',
  statistics = 'nextword.statistics',
  ignore_word = 'nextword.ignoreWord',
}

local TITLES = {
  [M.commands.learn_workspace] = 'learn workspace',
  [M.commands.retrain_neural] = 'retrain the neural model',
  [M.commands.forget_document] = 'forget this document',
  [M.commands.pause_learning] = 'pause learning',
  [M.commands.resume_learning] = 'resume learning',
  [M.commands.statistics] = 'statistics',
  [M.commands.ignore_word] = 'ignore word',
}

--- Nvim filetypes whose LSP language id differs from the filetype (the server speaks VS Code's ids).
M.language_ids = { text = 'plaintext', rst = 'restructuredtext', tex = 'latex', plaintex = 'latex' }

M.defaults = {
  --- The server command; nil: { 'nextword', 'serve' }.
  cmd = nil,
  --- The store to learn into and predict from; nil: the server's default. Sent as the `databasePath` setting, so it
  --- holds with any `cmd`. A store that is not there yet starts from the shipped model (the server says so once).
  db = nil,
  --- The server's default filetypes: plaintext, markdown, gitcommit, restructuredtext, latex.
  filetypes = { 'text', 'markdown', 'gitcommit', 'rst', 'tex', 'plaintex' },
  root_markers = { '.git' },
  --- Server settings (camelCase, as in VS Code without "nextword."): maxSuggestions, oddityThreshold, ...
  settings = {},
  --- Built-in completion with autotrigger (Nvim 0.11+): true, false, or 'auto' (on unless nvim-cmp or blink.cmp
  --- is loaded or installed, looked for again on each InsertEnter, so a lazy-loaded one is found; their LSP sources
  --- use the server as they find it, and the plugin sets what they need: see |nextword-completion|).
  completion = 'auto',
  --- Inline completion (ghost text) where Nvim supports it (0.12+).
  inline_completion = true,
  --- Statusline text; %s is the perplexity.
  statusline_format = 'PPL %s',
  --- Create the :Nextword* user commands.
  user_commands = true,
  --- Passed on to the LSP client, if set.
  capabilities = nil,
  on_attach = nil,
}

M.config = nil
M.learning = true

local function notify(message, level)
  vim.notify(message, level or levels.INFO, { title = NAME })
end

--- Nvim 0.11+ registers servers with vim.lsp.config / vim.lsp.enable.
function M._has_lsp_config()
  return vim.fn.has('nvim-0.11') == 1 and vim.lsp.config ~= nil and vim.lsp.enable ~= nil
end

local function get_clients(filter)
  return (vim.lsp.get_clients or vim.lsp.get_active_clients)(filter)
end

--- client:request on 0.11+, client.request before.
local function request(client, method, params, handler, bufnr)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function server_cmd(config)
  return config.cmd or { 'nextword', 'serve' }
end

--- The settings sent as initializationOptions: the user's, with `languages` from the filetypes unless given.
local function server_settings(config)
  local settings = vim.deepcopy(config.settings or {})
  if settings.languages == nil then
    local languages = {}
    for _, filetype in ipairs(config.filetypes) do
      local id = M.language_ids[filetype] or filetype
      if not vim.tbl_contains(languages, id) then
        table.insert(languages, id)
      end
    end
    settings.languages = languages
  end
  if config.db and settings.databasePath == nil then
    settings.databasePath = vim.fn.expand(config.db)
  end
  return settings
end

--- What shows the server's words: 'builtin' (vim.lsp.completion, turned on by this plugin), 'nvim-cmp' or
--- 'blink.cmp' (their LSP sources find the server by themselves), or 'other' (`completion = false`).
function M.completion_engine(config)
  config = config or M.config or M.defaults
  if config.completion == false then
    return 'other'
  end
  if config.completion == 'auto' then
    for _, name in ipairs({ 'cmp', 'blink.cmp' }) do
      local file = 'lua/' .. name:gsub('%.', '/') .. '/init.lua'
      if package.loaded[name] or #vim.api.nvim_get_runtime_file(file, false) > 0 then
        return name == 'cmp' and 'nvim-cmp' or name
      end
    end
  end
  return vim.lsp.completion and 'builtin' or 'other'
end

--- Autotrigger opens the menu at every space; with 'completeopt' as Nvim ships it ("menu,popup") the first word
--- would also be inserted. Add noselect for the buffer, where 'completeopt' can be set per buffer (0.11+); false
--- when the menu would not stay quiet.
local function quiet_menu(bufnr)
  local per_buffer = vim.api.nvim_get_option_info2('completeopt', {}).global_local
  local current = per_buffer and vim.api.nvim_get_option_value('completeopt', { buf = bufnr }) or ''
  current = current ~= '' and current or vim.go.completeopt -- the buffer's own value, or the global one
  if current:find('noselect') or current:find('noinsert') then
    return true
  end
  if per_buffer then
    vim.api.nvim_set_option_value('completeopt', current .. ',menuone,noselect', { buf = bufnr })
  end
  return per_buffer
end

--- nvim-cmp: the server ranks the words (sortText "0000", "0001", ...); nvim-cmp's default comparators put words
--- near the cursor or short ones first. For the plugin's filetypes, compare.sort_text goes first (the user's own
--- filetype configuration is kept; one that sets `sorting` is left alone).
function M._cmp_sorting(cmp, filetypes)
  local config = require('cmp.config')
  local comparators = vim.deepcopy(config.global.sorting.comparators)
  table.insert(comparators, 1, cmp.config.compare.sort_text)
  for _, filetype in ipairs(filetypes) do
    local own = config.filetypes[filetype] or {}
    if own.sorting == nil then
      local sorting = { priority_weight = config.global.sorting.priority_weight, comparators = comparators }
      cmp.setup.filetype(filetype, vim.tbl_extend('force', own, { sorting = sorting }))
    end
  end
end

--- blink.cmp blocks space as a trigger character by default (`completion.trigger.show_on_blocked_trigger_characters`),
--- and space is the only one nextword has. In buffers where nextword runs, space is let through; elsewhere, and for
--- every other character, blink's setting (the user's or its default) holds.
function M._blink_trigger()
  local trigger = require('blink.cmp.config').completion.trigger
  if trigger.nextword_wrapped then
    return
  end
  local blocked = trigger.show_on_blocked_trigger_characters
  trigger.show_on_blocked_trigger_characters = function(...)
    local list = type(blocked) == 'function' and blocked(...) or blocked
    if #get_clients({ name = NAME, bufnr = vim.api.nvim_get_current_buf() }) == 0 then
      return list
    end
    return vim.tbl_filter(function(char)
      return char ~= ' '
    end, list)
  end
  trigger.nextword_wrapped = true
end

--- Turn built-in completion on or off for the buffer, as `completion_engine` says now, and set up nvim-cmp or
--- blink.cmp when one of them does the work. Run at attach and on every InsertEnter (again once the event is over,
--- for a plugin manager that loads the completion plugin on InsertEnter after this autocmd ran).
function M._refresh_completion(client_id, bufnr)
  local config = M.config
  if not config or not vim.api.nvim_buf_is_valid(bufnr) then
    return
  end
  local engine = M.completion_engine(config)
  local enabled = vim.b[bufnr].nextword_builtin_completion == client_id -- the client it is on for, if any
  if engine == 'builtin' and not enabled and vim.lsp.completion then
    vim.lsp.completion.enable(true, client_id, bufnr, { autotrigger = quiet_menu(bufnr) })
    vim.b[bufnr].nextword_builtin_completion = client_id
  elseif engine ~= 'builtin' and enabled then
    vim.lsp.completion.enable(false, client_id, bufnr)
    vim.b[bufnr].nextword_builtin_completion = nil
  end
  local ok, plugin = pcall(require, engine == 'nvim-cmp' and 'cmp' or 'blink.cmp')
  if engine == 'nvim-cmp' and ok and not M._cmp_sorted then
    M._cmp_sorted = true
    M._cmp_sorting(plugin, config.filetypes)
  elseif engine == 'blink.cmp' and ok and package.loaded['blink.cmp.config'] then
    M._blink_trigger()
  end
end

--- Ghost text is for Insert mode. Nvim asks for it 200 ms after the cursor moves; an answer that comes after <Esc>
--- (or a request made then) would show in Normal mode and be applied by a later accept where it no longer fits.
--- Such answers are dropped here: the client sees an empty list, which clears the ghost.
local function insert_mode_ghosts_only(client)
  local request = client.request
  client.request = function(self, method, params, handler, bufnr)
    if method ~= 'textDocument/inlineCompletion' or type(handler) ~= 'function' then
      return request(self, method, params, handler, bufnr)
    end
    local function in_insert_mode()
      return vim.api.nvim_get_mode().mode:match('^[iR]') ~= nil
    end
    if not in_insert_mode() then
      return false
    end
    return request(self, method, params, function(err, result, ...)
      if not in_insert_mode() then
        result = { items = {} }
      end
      return handler(err, result, ...)
    end, bufnr)
  end
end

local function on_attach(client, bufnr)
  local config = M.config
  M._refresh_completion(client.id, bufnr)
  vim.api.nvim_create_autocmd('InsertEnter', {
    group = vim.api.nvim_create_augroup('nextword.completion.' .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function()
      M._refresh_completion(client.id, bufnr)
      vim.schedule(function()
        M._refresh_completion(client.id, bufnr)
      end)
    end,
  })
  if config.inline_completion and vim.lsp.inline_completion then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  end
  if config.on_attach then
    config.on_attach(client, bufnr)
  end
end

local function log_path()
  return vim.lsp.log and vim.lsp.log.get_filename and vim.lsp.log.get_filename() or vim.lsp.get_log_path()
end

local log_offset = 0 -- the LSP log's size when the newest nextword client started

--- The last line the server wrote to stderr since it started, from Nvim's LSP log (where Nvim's client puts it).
local function last_stderr_line(command)
  local file = io.open(log_path(), 'rb')
  if not file then
    return nil
  end
  file:seek('set', log_offset)
  local text = file:read('*a') or ''
  file:close()
  local tag = '\t' .. vim.inspect(command) .. '\t"stderr"\t'
  local last
  for line in text:gmatch('[^\n]+') do
    local at = line:find(tag, 1, true)
    local literal = at and line:sub(at + #tag) -- a string literal written by vim.inspect
    local chunk = literal and literal:match('^["\'].*["\']$') and load('return ' .. literal, 'stderr', 't', {})
    local ok, value = pcall(chunk or error)
    if ok and type(value) == 'string' then
      for said in value:gmatch('[^\n]+') do
        last = said:match('%S') and vim.trim(said) or last
      end
    end
  end
  return last
end

local function exit_handler(command)
  return function(code, signal, _)
    if code == 0 and signal == 0 then
      return
    end
    vim.schedule(function()
      local how = signal ~= 0 and ('was killed (signal %d)'):format(signal) or ('exited with code %d'):format(code)
      local said = type(command) == 'string' and last_stderr_line(command)
      notify(
        ('nextword: the server %s%s. See :NextwordLog and :checkhealth nextword.'):format(how, said and (': ' .. said) or ''),
        levels.ERROR
      )
    end)
  end
end

local function on_perplexity(_, result, _)
  if type(result) ~= 'table' or type(result.uri) ~= 'string' then
    return
  end
  local bufnr = vim.fn.bufnr(vim.uri_to_fname(result.uri))
  if bufnr == -1 then
    return
  end
  local perplexity = result.perplexity ~= vim.NIL and result.perplexity or nil
  vim.b[bufnr].nextword = { perplexity = perplexity, tokens = result.tokens }
  vim.api.nvim_exec_autocmds('User', { pattern = 'NextwordPerplexity', modeline = false, data = { buf = bufnr } })
  vim.cmd.redrawstatus({ bang = true })
end

--- The statusline text for a buffer (default: the current one): the perplexity of its text, '' when unknown.
function M.statusline(bufnr)
  local info = vim.b[bufnr or 0].nextword
  if type(info) ~= 'table' or type(info.perplexity) ~= 'number' then
    return ''
  end
  local shown = info.perplexity >= 1000 and ('%d'):format(info.perplexity) or ('%.1f'):format(info.perplexity)
  local format = M.config and M.config.statusline_format or M.defaults.statusline_format
  return format:format(shown) .. (M.learning and '' or ' (paused)')
end

local function count(value)
  if type(value) ~= 'number' then
    return tostring(value)
  end
  local text = ('%d'):format(value)
  return (text:reverse():gsub('(%d%d%d)', '%1,'):reverse():gsub('^,', ''))
end

--- A line about the store, from the nextword.statistics result.
function M.describe_statistics(stats)
  local orders = {}
  local ngrams = type(stats.ngrams) == 'table' and stats.ngrams or {}
  local keys = vim.tbl_keys(ngrams)
  table.sort(keys, function(a, b)
    return tonumber(a) < tonumber(b)
  end)
  for _, n in ipairs(keys) do
    table.insert(orders, ('%s-grams %s'):format(n, count(ngrams[n])))
  end
  local ignored = type(stats.ignored) == 'table' and #stats.ignored > 0 and ('; ignoring ' .. table.concat(stats.ignored, ', '))
    or ''
  return ('nextword: %s tokens from %s source%s, %s words; %s; %s order %s; learning %s%s. Store: %s'):format(
    count(stats.tokens),
    count(stats.sources),
    stats.sources == 1 and '' or 's',
    count(stats.vocabulary),
    table.concat(orders, ', '),
    tostring(stats.smoothing),
    tostring(stats.model_order),
    stats.learning == false and 'paused' or 'on',
    ignored,
    tostring(stats.path)
  )
end

local function describe_result(command, result)
  result = type(result) == 'table' and result or {}
  if command == M.commands.learn_workspace then
    local text = ('nextword learned %s of %s text file%s'):format(
      count(result.learned),
      count(result.files),
      result.files == 1 and '' or 's'
    )
    if result.cancelled then
      text = text .. ' (cancelled)'
    end
    return text .. (result.files == 0 and '; open a file inside a folder with .git first.' or '.')
  elseif command == M.commands.forget_document then
    return result.forgotten and 'nextword forgot this document.' or 'nextword had not learned this document.'
  elseif command == M.commands.pause_learning then
    return 'nextword: learning paused.'
  elseif command == M.commands.resume_learning then
    return 'nextword: learning resumed.'
  elseif command == M.commands.statistics then
    return M.describe_statistics(result)
  elseif command == M.commands.ignore_word then
    return ('nextword ignores: %s.'):format(table.concat(result.ignored or {}, ', '))
  elseif command == M.commands.retrain_neural then
    return 'nextword: the neural model was retrained.'
  end
end

local function describe_error(client, command, err)
  local message = type(err) == 'table' and err.message or tostring(err)
  local provider = client.server_capabilities and client.server_capabilities.executeCommandProvider
  local offered = provider and provider.commands or {}
  if not vim.tbl_contains(offered, command) then
    return ('nextword: %s is not available from this server yet (%s).'):format(TITLES[command] or command, message)
  end
  return ('nextword: %s failed: %s'):format(TITLES[command] or command, message)
end

--- Run a server command and tell the user how it went. `on_done(err, result)` is called afterwards, if given.
function M.execute(command, arguments, on_done)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = get_clients({ name = NAME, bufnr = bufnr })[1] or get_clients({ name = NAME })[1]
  if not client then
    notify('nextword: the server is not running; open a text or Markdown file (see :checkhealth nextword).', levels.WARN)
    return false
  end
  request(client, 'workspace/executeCommand', { command = command, arguments = arguments or {} }, function(err, result)
    if err then
      notify(describe_error(client, command, err), levels.ERROR)
    else
      if command == M.commands.pause_learning or command == M.commands.resume_learning then
        M.learning = command == M.commands.resume_learning
        vim.cmd.redrawstatus({ bang = true })
      end
      notify(describe_result(command, result), levels.INFO)
    end
    if on_done then
      on_done(err, result)
    end
  end, bufnr)
  return true
end

local function create_user_commands()
  local function add(name, run, opts)
    vim.api.nvim_create_user_command(name, run, vim.tbl_extend('force', { nargs = 0 }, opts or {}))
  end
  -- Commands that run a server command without arguments: name, server command, what it does.
  local plain = {
    { 'NextwordLearnWorkspace', M.commands.learn_workspace, 'learn every text file of the workspace' },
    { 'NextwordRetrainNeural', M.commands.retrain_neural, 'retrain the neural model' },
    { 'NextwordPause', M.commands.pause_learning, 'pause learning' },
    { 'NextwordResume', M.commands.resume_learning, 'resume learning' },
    { 'NextwordStats', M.commands.statistics, "what the server's store holds" },
  }
  for _, command in ipairs(plain) do
    local name, server_command, what = command[1], command[2], command[3]
    add(name, function()
      M.execute(server_command)
    end, { desc = 'nextword: ' .. what })
  end
  add('NextwordForget', function()
    M.execute(M.commands.forget_document, { vim.uri_from_bufnr(0) })
  end, { desc = 'nextword: forget what was learned from this document' })
  add('NextwordIgnore', function(args)
    local word = args.args ~= '' and args.args or vim.fn.expand('<cword>')
    M.execute(M.commands.ignore_word, { word })
  end, { nargs = '?', desc = 'nextword: never flag a word (default: the word under the cursor)' })
  add('NextwordLog', function()
    vim.cmd.tabnew(log_path())
  end, { desc = "nextword: open Nvim's LSP log (the server's messages)" })
end

local function root_dir(bufnr, markers)
  if vim.fs.root then
    return vim.fs.root(bufnr, markers)
  end
  local found = vim.fs.find(markers, { upward = true, path = vim.fs.dirname(vim.api.nvim_buf_get_name(bufnr)) })[1]
  return found and vim.fs.dirname(found) or nil
end

--- Register the server. Returns false (after an error message) when the server command cannot be found.
function M.setup(opts)
  if vim.fn.has('nvim-0.10') ~= 1 then
    local version = vim.split(vim.fn.execute('version'), '\n', { trimempty = true })[1] or 'this Nvim'
    notify(('nextword needs Nvim 0.10 or later, not %s; the plugin stays off.'):format(vim.trim(version)), levels.ERROR)
    return false
  end
  opts = opts or {}
  local config = vim.tbl_extend('force', vim.deepcopy(M.defaults), opts)
  config.settings = vim.tbl_extend('force', {}, opts.settings or {})
  M.config = config
  if config.user_commands then
    create_user_commands()
  end
  local cmd = server_cmd(config)
  if type(cmd) == 'table' and vim.fn.executable(cmd[1]) ~= 1 then
    notify(
      ("nextword: the server command '%s' was not found. Install nextword (pip install nextword), or give its full "
        .. "path: require('nextword').setup{ cmd = { '/path/to/nextword', 'serve' } }"):format(tostring(cmd[1])),
      levels.ERROR
    )
    return false
  end
  local client_config = {
    name = NAME,
    cmd = cmd,
    filetypes = config.filetypes,
    root_markers = config.root_markers,
    init_options = { nextword = server_settings(config) },
    get_language_id = function(_, filetype)
      return M.language_ids[filetype] or filetype
    end,
    handlers = { ['nextword/perplexity'] = on_perplexity },
    capabilities = config.capabilities,
    on_attach = on_attach,
    on_init = insert_mode_ghosts_only,
    on_exit = exit_handler(type(cmd) == 'table' and cmd[1] or nil),
    before_init = function()
      log_offset = math.max(vim.fn.getfsize(log_path()), 0)
    end,
  }
  if M._has_lsp_config() then
    vim.lsp.config(NAME, client_config)
    vim.lsp.enable(NAME)
    return true
  end
  -- Nvim 0.10: start (or reuse) the client for each buffer of a matching filetype.
  local function start(bufnr)
    local config_for_buffer = vim.tbl_extend('force', client_config, { root_dir = root_dir(bufnr, config.root_markers) })
    config_for_buffer.root_markers, config_for_buffer.filetypes = nil, nil
    vim.lsp.start(config_for_buffer, { bufnr = bufnr })
  end
  local group = vim.api.nvim_create_augroup('nextword', { clear = true })
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = config.filetypes,
    callback = function(args)
      start(args.buf)
    end,
  })
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(config.filetypes, vim.bo[bufnr].filetype) then
      start(bufnr)
    end
  end
  return true
end

return M
