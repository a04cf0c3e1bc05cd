// Input mode: snowgate aborts the input on rejection; the step fails with the plugin's words.
snDevOpsChange(waitMode: 'input')
echo 'not reached: the stage went on after a rejection'
