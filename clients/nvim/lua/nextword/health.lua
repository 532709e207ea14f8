--- :checkhealth nextword
local M = {}

function M.check()
  local health = vim.health
  local nextword = require('nextword')
  health.start('nextword')
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Nvim ' .. tostring(vim.version()) .. ': registered with vim.lsp.config / vim.lsp.enable')
  elseif vim.fn.has('nvim-0.10') == 1 then
    health.warn('Nvim ' .. tostring(vim.version()) .. ': started with vim.lsp.start; no built-in completion', {
      'Nvim 0.11+ adds built-in completion, 0.12+ inline completion (ghost text)',
    })
  else
    health.error('Nvim 0.10 or later is needed')
  end
  local config = nextword.config
  if not config then
    health.error("require('nextword').setup{} has not been called")
    return
  end
  local cmd = config.cmd or { 'nextword', 'serve' }
  if type(cmd) == 'table' then
    local path = vim.fn.exepath(cmd[1])
    if path ~= '' then
      health.ok(('server command: %s (%s)'):format(table.concat(cmd, ' '), path))
    else
      health.error(('server command not found: %s'):format(cmd[1]), {
        'pip install nextword, or setup{ cmd = { "/full/path/to/nextword", "serve" } }',
      })
    end
  end
  health.info('filetypes: ' .. table.concat(config.filetypes, ', '))
  local clients = (vim.lsp.get_clients or vim.lsp.get_active_clients)({ name = 'nextword' })
  if #clients == 0 then
    health.info('no nextword server is running (one starts with the first buffer of those filetypes)')
  end
  for _, client in ipairs(clients) do
    health.ok(('server running (client %d, root %s)'):format(client.id, client.root_dir or 'none: single files'))
  end
  health.info('completion: ' .. nextword.completion_engine(config))
  health.info('inline completion: ' .. ((config.inline_completion and vim.lsp.inline_completion) and 'on' or 'off'))
end

return M
