/* placeholder: subcommands land here */
