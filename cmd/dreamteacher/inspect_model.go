package main

func inspectModel(args []string) error {
	return usagef("inspect model: not wired yet")
}
