-- What a plugin manager does with a configuration, for tests/test_nvim_completion_plugins.py: puts plugins on the
-- runtime path and sources their plugin/ and after/plugin/ files, and, for lazy.nvim specs, loads a plugin with an
-- `event` only when that event first fires and then fires it again for the autocmds the plugin created (as
-- lazy.nvim does), calling `config` or `require(main).setup(opts)`. Only what the README's specs use is here.
local M = {}

--- Put the plugin folder `dir` on the runtime path and source its plugin/ and after/plugin/ scripts.
function M.load(dir)
  vim.opt.rtp:prepend(dir)
  vim.opt.rtp:append(dir .. '/after')
  for _, folder in ipairs({ '/plugin', '/after/plugin' }) do
    for _, file in ipairs(vim.fn.glob(dir .. folder .. '/**/*.{vim,lua}', false, true)) do
      vim.cmd.source(vim.fn.fnameescape(file))
    end
  end
end

--- The module a spec's `opts` are given to: its `main`, else the one named like the plugin, else the only one.
local function main_module(spec, dir)
  if spec.main then
    return spec.main
  end
  local name = vim.fs.basename(spec[1] or dir):gsub('%.nvim$', ''):gsub('^nvim%-', '')
  if vim.uv.fs_stat(dir .. '/lua/' .. name:gsub('%.', '/')) or vim.uv.fs_stat(dir .. '/lua/' .. name .. '.lua') then
    return name
  end
  local entries = vim.fn.readdir(dir .. '/lua')
  assert(#entries == 1, 'cannot tell the main module of ' .. dir)
  return (entries[1]:gsub('%.lua$', ''))
end

--- Load a list of lazy.nvim specs; `folders` maps 'owner/name' to the plugin's folder.
function M.lazy(specs, folders)
  for _, spec in ipairs(specs) do
    local dir = spec.dir or assert(folders[spec[1]], 'no folder for ' .. tostring(spec[1]))
    local function setup()
      for _, dependency in ipairs(spec.dependencies or {}) do
        M.load(assert(folders[dependency], 'no folder for ' .. dependency))
      end
      M.load(dir)
      if spec.config then
        spec.config(spec, spec.opts or {})
      elseif spec.opts then
        require(main_module(spec, dir)).setup(spec.opts)
      end
    end
    if spec.event then
      vim.api.nvim_create_autocmd(spec.event, {
        once = true,
        callback = function(args)
          local before = {}
          for _, autocmd in ipairs(vim.api.nvim_get_autocmds({ event = spec.event })) do
            before[autocmd.group or 0] = true
          end
          setup()
          local fired = {}
          for _, autocmd in ipairs(vim.api.nvim_get_autocmds({ event = spec.event })) do
            local group = autocmd.group
            if group and not before[group] and not fired[group] then
              fired[group] = true
              vim.api.nvim_exec_autocmds(spec.event, { group = group, buffer = args.buf, modeline = false })
            end
          end
        end,
      })
    else
      setup()
    end
  end
end

return M
