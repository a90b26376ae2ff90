# fish completion for kyro-verify(1)
# The tool takes no operands, so file names are turned off.
complete -c kyro-verify -f
complete -c kyro-verify -s h -l help -d 'Print the usage and exit'
complete -c kyro-verify -l version -d 'Print the version and exit'
complete -c kyro-verify -s d -l dir -x -a '(__fish_complete_directories (commandline -ct | string replace -r -- "^--dir=" ""))' -d 'Data directory'
complete -c kyro-verify -s v -d 'Print a summary of what was checked'
complete -c kyro-verify -l repair -d 'Repair the WAL and the LOCK page; what is cut goes to lost+found'
complete -c kyro-verify -l deep -d 'Check every key lies inside its index window'
